"""What a run shows and leaves behind: progress bars, the summary table, the Pareto plot,
CSV files, ``report.md``, the run's summary and its results directory.

Nothing here computes a result; every function takes finished values and presents them.
"""

from mpsearch.report.files import write_run_files, write_summary
from mpsearch.report.markdown import write_report
from mpsearch.report.plain import plain, table_from_dict, table_to_dict
from mpsearch.report.plots import plot_pareto
from mpsearch.report.progress import Progress, progress
from mpsearch.report.summary import RunHeader, RunRecord, run_summary, summary_rows
from mpsearch.report.tables import print_summary, write_csv

__all__ = ["Progress", "RunHeader", "RunRecord", "plain", "plot_pareto", "print_summary", "progress", "run_summary",
           "summary_rows", "table_from_dict", "table_to_dict", "write_csv", "write_report", "write_run_files",
           "write_summary"]
