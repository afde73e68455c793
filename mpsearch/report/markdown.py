"""``report.md``: what was chosen and why, from a run's summary (plain data, see ``summary.py``)."""

from __future__ import annotations

import os
from typing import Any, Mapping

from mpsearch.core.io import write_text_atomic
from mpsearch.report.frontier_qat import frontier_qat_section
from mpsearch.report.guard import guard_section
from mpsearch.report.target import target_section
from mpsearch.report.metric import metric_view
from mpsearch.report.truth import lsb_sentence, pareto_note, solved_by, uniform_comparison


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None:
        return "-"
    # a relative budget ("50%") stays as written until the allocator resolves it: show the text
    return format(v, fmt) if isinstance(v, (int, float)) else str(v)


def render_report(s: Mapping[str, Any]) -> str:
    """The Markdown text of a run's report."""
    L: list[str] = []
    prof = s["profile"]
    L += [f"# mpsearch run `{s['name']}`", "",
          f"Recipe `{s['recipe']}`: model `{s['model']}` on hardware profile `{prof['name']}` "
          f"(source: {prof['source']}), sensitivity `{s['sensitivity']['method']}`, allocation "
          f"`{s['allocation']['method']}` (status {s['allocation']['status']}"
          f"{', proven optimal' if s['allocation']['optimal'] else ''}), seed {s['seed']}.", "",
          f"Solved by {solved_by(s)}.", ""]
    L += ["## Budgets and totals", "", "| resource | budget given | budget (absolute) | plan total |", "|---|---|---|---|"]
    for res, given in s["budgets"]["given"].items():
        L.append(f"| {res} | `{given}` | {_num(s['budgets']['absolute'].get(res), '.6g')} | {_num(s['totals'].get(res), '.6g')} |")
    others = [k for k in s["totals"] if k not in s["budgets"]["given"]]
    for res in others:
        L.append(f"| {res} | - | - | {_num(s['totals'][res], '.6g')} |")
    L += ["", f"Total omega (expected loss increase, the ILP objective): {_num(s['objective'], '.6g')}.", ""]
    L += ["## Chosen bits per layer", "",
          "Why: each layer's omega = mean Hessian trace x ||Q(W) - W||^2 (+ the activation term) at its bits; "
          "the allocator picked the candidates with the smallest total omega that fit the budgets, so layers "
          "with a large trace keep more bits.", "",
          "| layer | kind | params | bits | trace | mean trace | omega | size (B) | latency (ms) | latency from | candidates |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["layers"]:
        L.append(f"| `{r['layer']}` | {r['kind']} | {r['n_params']} | **{r.get('key') or 'w%sa%s' % (r['w_bits'], r['a_bits'])}** | "
                 f"{_num(r['trace'])} | {_num(r['mean_trace'])} | {_num(r['omega'])} | {_num(r.get('size_bytes'), '.0f')} | "
                 f"{_num(r.get('latency_ms'))} | {r.get('latency_source') or '-'} | {' '.join(r['candidates'])} |")
    srcs = sorted({r.get("latency_source") for r in s["layers"] if r.get("latency_source")})
    L += ["", f"Latency numbers came from: {', '.join(srcs) or '-'} "
          f"(the profile has {prof['n_lut_entries']} measured LUT entries; 'roofline' means the analytic model).", ""]
    split = s.get("validation_split", "test")
    m = metric_view(s)
    _pct = m.fmt  # noqa: N806  # the run's metric: percent for accuracy, bits/byte for a language model
    what = "Accuracy" if m.name == "accuracy" else f"{m.name.replace('_', ' ').capitalize()} ({'higher' if m.higher_is_better else 'lower'} is better)"
    L += ["## Against uniform baselines", "",
          f"{what} on the `{split}` split. PTQ: min-max calibration, no training; QAT: the recipe's fine-tuning.", "",
          f"| plan | size (B) | latency (ms) | omega | {m.label} PTQ | {m.label} QAT | {m.label} integer |", "|---|---|---|---|---|---|---|",
          f"| float32 | - | - | 0 | {_pct(s['float_accuracy'])} | - | - |"]
    c = s["chosen"]
    L.append(f"| **chosen (mixed)** | {_num(c.get('size_bytes'), '.0f')} | {_num(c.get('latency_ms'))} | {_num(c['omega'])} | "
             f"{_pct(c.get('acc_ptq'))} | {_pct(c.get('acc_qat'))} | {_pct(c.get('acc_int'))} |")
    for k, b in s["baselines"].items():
        note = f" ({len(b['layers_at_other_bits'])} layers at other bits: device rules)" if b.get("layers_at_other_bits") else ""
        L.append(f"| uniform {k.upper()}{note} | {_num(b.get('size_bytes'), '.0f')} | {_num(b.get('latency_ms'))} | "
                 f"{_num(b['omega'])} | {_pct(b.get('acc_ptq'))} | {_pct(b.get('acc_qat'))} | - |")
    L.append("")
    def better(x: float, y: float) -> bool:
        return x > y if m.higher_is_better else x < y

    compared = uniform_comparison(c, s["baselines"], better, _pct)
    L += compared
    n = (s.get("validation") or {}).get("n_images")
    if compared and n:
        L += [f"On {n} images one image is {100 / n:.2f} points, and a single QAT run (one seed) moves by an "
              "image or two from seed to seed: compare plans over several seeds or splits before calling "
              "a difference of a few images (docs/BENCHMARKS.md, \"End to end\").", ""]
    L += target_section(s)
    L += guard_section(s)
    ft = s.get("finetune")
    if ft:
        d = ft.get("distill")
        L += ["## Fine-tuning (QAT)", "",
              f"{ft['epochs']} epochs, Adam lr {ft['lr']} with cosine decay, straight-through estimator, "
              f"example order drawn from seed {ft.get('seed', s['seed'])}; "
              + (f"knowledge distillation from the float model (T = {d['temperature']}, alpha = {d['alpha']})." if d
                 else "hard labels only.")
              + (f" Train loss per epoch: {', '.join(f'{x:.4f}' for x in ft.get('train_loss', []))}." if ft.get("train_loss") else ""), ""]
    v = s.get("validation")
    if v and v.get("n_positions"):  # a language model: per-position agreement and bits per token
        ops = v.get("float_ops") or []
        L += ["## Integer program validation", "",
              f"On {v['n_images']} windows ({v['n_positions']} next-token predictions): top-1 agreement with the "
              f"fake-quant simulation {100 * v['top1_agreement']:.2f}%, bits per token {v['bits_per_token_int']:.4f} "
              f"(program) vs {v['bits_per_token_fake']:.4f} (simulation), perplexity difference "
              f"{v['perplexity_diff']:+.4f}. The program is in `integer_model/`.", "",
              (f"{len(ops)} ops ran in float (declared float islands: the plan has weight-only layers, or the "
               "profile is not integer-only):" if ops else "Integer-only: no op ran in float."), ""]
        L += [f"- {op}" for op in ops] + ([""] if ops else [])
    elif v:
        L += ["## Integer-only validation", "",
              f"On {v['n_images']} images: integer accuracy {_pct(v['accuracy_int'])}, fake-quant {_pct(v['accuracy_fake'])}, "
              f"top-1 agreement {_pct(v['top1_agreement'])}, {lsb_sentence(v)}. The integer program is in `integer_model/`.", ""]
    if s.get("frontier"):
        res = s["pareto_resource"]
        L += ["## Pareto frontier", "", f"{len(s['frontier'])} ILP optima sweeping `{res}` "
              "(`pareto.csv`, `pareto.json`, `pareto.png`)." + (" " + pareto_note(s) if pareto_note(s) else ""), "",
              f"| {res} | omega | {m.label} PTQ |", "|---|---|---|"]
        for p in s["frontier"]:
            L.append(f"| {p[res]:.6g} | {p['omega']:.4g} | {_pct(p.get('acc_ptq'))} |")
        L.append("")
    L += frontier_qat_section(s, _pct, m.label)
    t = s.get("timings_s", {})
    L += ["## Timings", "", ", ".join(f"{k} {v:.1f}" for k, v in t.items()), ""]
    return "\n".join(L)


def write_report(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> None:
    """Render and write ``report.md`` atomically."""
    write_text_atomic(path, render_report(summary))
