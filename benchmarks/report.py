"""The benchmark report as plain-text tables."""

from __future__ import annotations


def _row(cells, widths) -> str:
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _table(header: list, rows: list[list]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), _row(["-" * w for w in widths], widths)]
    return "\n".join(lines + [_row(r, widths) for r in rows])


def components_table(components: dict) -> str:
    rows = [[key, value] for key, value in components.items() if key != "decode"]
    table = _table(["component", "value"], rows)
    decode = [[f"decode batch {b}", step["step_ms"], step["ms_per_token"], step["tokens_per_s"]]
              for b, step in components["decode"].items()]
    return table + "\n\n" + _table(["decode", "ms/step", "ms/token", "tokens/s"], decode)


def modes_table(modes: dict) -> str:
    counts = sorted({int(n) for mode in modes.values() for n in mode["seconds_per_image"]})
    ratio_keys = [f"{n}/1" for n in counts if n in (8, 16)]
    header = ["mode", *[f"{n} label{'s' if n > 1 else ''} (s)" for n in counts], *ratio_keys,
              *[f"{k} (min)" for k in ratio_keys]]
    rows = []
    for name, mode in modes.items():
        seconds = mode["seconds_per_image"]
        rows.append([name, *[f"{seconds[str(n)]['median_s']:.3f}" if str(n) in seconds else "-" for n in counts],
                     *[f"{mode['ratios'][k]:.2f}x" if k in mode["ratios"] else "-" for k in ratio_keys],
                     *[f"{mode['ratios_of_min'][k]:.2f}x" if k in mode["ratios_of_min"] else "-"
                       for k in ratio_keys]])
    return _table(header, rows)


def gpu_table(gpu: dict) -> str:
    peak = gpu["peak_bandwidth_GBps"]
    rows = [["GPU", gpu["gpu"]],
            ["decode tokens/s (batch 1)", gpu["decode_tokens_per_s_batch1"]],
            ["weights read per step (GB)", round(gpu["weight_bytes_per_step"] / 1e9, 3)],
            ["achieved bandwidth (GB/s)", gpu["achieved_bandwidth_GBps"]],
            ["  with KV cache reads (GB/s)", gpu["achieved_bandwidth_with_kv_GBps"]],
            ["card peak (GB/s)", "n/a" if peak is None else peak],
            ["fraction of peak", "n/a" if gpu["fraction_of_peak"] is None else gpu["fraction_of_peak"]]]
    rows += [[f"target {k}", "n/a" if v is None else ("met" if v else "MISSED")] for k, v in gpu["targets"].items()]
    return _table(["GPU decode", "value"], rows)


def render_table(report: dict) -> str:
    env = report["environment"]
    parts = [f"NExT-Chat benchmark: {report['model']}; {env['device']} {env['dtype']}, {env['threads']} threads, "
             f"image {env['image_size'][0]}x{env['image_size'][1]}, max_new_tokens {env['max_new_tokens']}, "
             f"median of {env['repeats']} after {env['warmup']} warm-up (ratios also of the fastest runs)"]
    if "components" in report:
        parts.append(components_table(report["components"]))
    parts.append(modes_table(report["modes"]))
    if "gpu" in report:
        parts.append(gpu_table(report["gpu"]))
    if "targets" in report:
        parts.append(_table(["CPU target", "result"],
                            [[k, "n/a" if v is None else ("met" if v else "MISSED")]
                             for k, v in report["targets"].items()]))
    return "\n\n".join(parts)
