"""What a run shows and leaves behind: progress bars, the summary table, the Pareto plot,
CSV files and ``report.md``.

Nothing here computes a result; every function takes finished values and presents them.
"""

from mpsearch.report.markdown import write_report
from mpsearch.report.plots import plot_pareto
from mpsearch.report.progress import Progress, progress
from mpsearch.report.tables import print_summary, write_csv

__all__ = ["Progress", "plot_pareto", "print_summary", "progress", "write_csv", "write_report"]
