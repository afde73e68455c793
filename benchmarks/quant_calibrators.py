"""Calibrators compared: quantization error (SQNR) and time, on synthetic tensors.

Run: ``python benchmarks/quant_calibrators.py``. Prints a table and writes
``benchmarks/results/quant_calibrators.json``. Data are seeded; no download.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from mpsearch.quant import CALIBRATORS, QuantSpec, fake_quantize, make_calibrator

N_ELEMENTS = 200_000
N_BATCHES = 4


def datasets(g: torch.Generator) -> dict[str, torch.Tensor]:
    gauss = torch.randn(N_ELEMENTS, generator=g)
    outliers = gauss.clone()
    outliers[:20] = torch.linspace(-30, 30, 20)  # 0.01% outliers at up to 30 sigma
    laplace = torch.distributions.Laplace(0.0, 1.0).sample((N_ELEMENTS,))
    return {"gaussian": gauss, "gaussian+outliers": outliers, "laplace": laplace, "relu(gaussian)": gauss.relu()}


def sqnr_db(x: torch.Tensor, xq: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB (higher is better)."""
    noise = (xq - x).double().pow(2).sum()
    return float(10 * torch.log10(x.double().pow(2).sum() / noise))


def main() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rows = []
    for data_name, x in datasets(g).items():
        for bits in (8, 4):
            spec = QuantSpec(bits, symmetric=data_name != "relu(gaussian)", signed=True)
            for name in CALIBRATORS:
                cal = make_calibrator(name, spec)
                start = time.perf_counter()
                for chunk in x.chunk(N_BATCHES):
                    cal.observe(chunk)
                scale, zero_point = cal.compute()
                elapsed_ms = (time.perf_counter() - start) * 1e3
                xq = fake_quantize(x, scale, zero_point, spec)
                rows.append({"data": data_name, "bits": bits, "calibrator": name,
                             "sqnr_db": round(sqnr_db(x, xq), 2), "time_ms": round(elapsed_ms, 1),
                             "clip": round(float(scale * (spec.qmax - zero_point)), 3)})
    print(f"{'data':<18} {'bits':>4} {'calibrator':<11} {'SQNR dB':>8} {'clip max':>9} {'time ms':>8}")
    for r in rows:
        print(f"{r['data']:<18} {r['bits']:>4} {r['calibrator']:<11} {r['sqnr_db']:>8.2f} {r['clip']:>9.3f} "
              f"{r['time_ms']:>8.1f}")
    out = Path(__file__).parent / "results" / "quant_calibrators.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"n_elements": N_ELEMENTS, "n_batches": N_BATCHES, "torch": torch.__version__,
            "machine": platform.machine(), "threads": torch.get_num_threads()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
