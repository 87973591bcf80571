"""The check's report: JSON (every number) and a short plain-text table (printed last)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def table(header: list, rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def finite(value):
    """JSON-safe numbers: inf / nan become strings (json.dumps would write non-standard tokens)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_report(report: dict, results_dir: Path) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, table_path = results_dir / "gpu_check.json", results_dir / "gpu_check.txt"
    json_path.write_text(json.dumps(finite(report), indent=2) + "\n")
    table_path.write_text(render(report) + "\n")
    return json_path, table_path


def fmt(value, digits: int = 3, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}" if abs(value) < 1e-2 and value else f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def verdict(met) -> str:
    return "-" if met is None else ("met" if met else "MISSED")


def problem(phase) -> str | None:
    if not isinstance(phase, dict):
        return "not run"
    if "skipped" in phase:
        return f"skipped: {phase['skipped']}"
    if "error" in phase:
        return f"ERROR: {phase['error']}"
    return None


# ----------------------------------------------------------------------------- sections
def parity_section(parity: dict) -> str:
    runs = parity["runs"]
    header = ["parity case"]
    for name, run in runs.items():
        label = f"{name}{' (TF32 off)' if name == 'fp32' else ''}"
        header += [f"{label} ids", "box dev", "mask dev"] + (["within tol"] if run["judged_against_fp32_tolerances"]
                                                              else [])
    rows = []
    for case in parity["cases"]:
        row = [case]
        for run in runs.values():
            found = run["cases"][case]
            if "error" in found:
                row += ["ERROR", "-", "-"] + (["NO"] if run["judged_against_fp32_tolerances"] else [])
                continue
            row += [fmt(found["ids_match"]), fmt(found["max_box_deviation"], 2),
                    fmt(found["max_mask_logit_deviation"], 2)]
            if run["judged_against_fp32_tolerances"]:
                outside = found["outside_fp32_tolerances"]
                row.append("yes" if not outside else "NO: " + ",".join(outside))
        rows.append(row)
    return table(header, rows)


def components_section(model: dict) -> str:
    c = model["components"]
    rows = [["CLIP tower + projector", fmt(c["clip_tower_ms"])],
            ["SAM image encoder", fmt(c["sam_encoder_ms"])],
            [f"prefill, shared prefix ({c['prefix_tokens']} tokens)", fmt(c["prefill_prefix_ms"])],
            ["prefill, one suffix after the cached prefix", fmt(c["prefill_suffix_ms"])],
            [f"prefill, full prompt ({c['prompt_tokens']} tokens)", fmt(c["prefill_full_prompt_ms"])]]
    for batch, step in c["decode"].items():
        rows.append([f"decode step, batch {batch} (ms/token {fmt(step['ms_per_token'])})", fmt(step["step_ms"])])
    rows += [[f"SAM mask decoder per box, {key.rsplit('batch', 1)[1]} box(es) per call", fmt(value)]
             for key, value in c.items() if key.startswith("sam_decoder_ms_per_box")]
    rows.append(["mask upscaling per box", fmt(c["mask_postprocess_ms_per_box"])])
    memory = ", ".join(f"{k} {v}" for k, v in model["memory_after_build"].items())
    head = (f"model: {model['model']}, {model['dtype']}; built in {model['build_s']} s, weights "
            f"{model['weights_GiB']} GiB, memory after build {memory}")
    return head + "\n" + table(["component", "ms"], rows)


def bandwidth_section(model: dict) -> str:
    b = model["bandwidth"]
    return (f"decode at batch 1: {fmt(b['decode_tokens_per_s_batch1'], 1)} tokens/s, "
            f"{fmt(b['achieved_bandwidth_GBps'], 1)} GB/s of weights = {fmt(b['fraction_of_measured_copy'])} of the "
            f"copy measured here ({fmt(b['measured_copy_GBps'], 1)} GB/s read+write), "
            f"{fmt(b['fraction_of_peak'])} of the datasheet peak ({fmt(b['peak_bandwidth_GBps'], 1)} GB/s)")


def modes_section(model: dict) -> str:
    modes = model["modes"]
    counts = sorted({int(n) for mode in modes.values() for n in mode["seconds_per_image"]})
    rows = []
    for name, mode in modes.items():
        seconds = mode["seconds_per_image"]
        rows.append([name, *[fmt(seconds.get(str(n), {}).get("median_s")) for n in counts],
                     *[fmt(mode["ratios"].get(f"{n}/1"), 2, "x") for n in counts if n != 1]])
    header = ["s per image", *[f"{n} label{'s' if n > 1 else ''}" for n in counts],
              *[f"{n}/1" for n in counts if n != 1]]
    return table(header, rows)


def serve_section(serve: dict) -> str:
    rows = [["checkpoint written", f"{fmt(serve['checkpoint']['seconds'], 1)} s, "
                                   f"{serve['checkpoint']['GiB_on_disk']} GiB"],
            ["server ready (model loaded)", problem(serve["ready_s"]) if isinstance(serve["ready_s"], dict)
             else f"{serve['ready_s']} s"]]
    rows.append(["CUDA OOM: 503, then 200", oom_text(serve.get("oom"))])
    for key, label in (("predict_8_labels", "/predict, 1 task, 8 labels (boxes), new image"),
                       ("predict_8_labels_brush", "/predict, 1 task, 8 labels (boxes + brush), new image"),
                       ("interactive_box", "drawn box -> brush mask (interactive), same image")):
        part = serve.get(key)
        text = problem(part)
        if text is None:
            first = part.get("first_call")
            text = (f"p50 {fmt(part.get('p50_s'))} s, p95 {fmt(part.get('p95_s'))} s over {part['calls']} calls "
                    f"(statuses {part['statuses']})" + (f"; first call {fmt(first['seconds'])} s" if first else ""))
        rows.append([label, text])
    log = serve.get("server_log", {})
    rows.append(["server log", f"{log.get('error_lines', '-')} ERROR lines, {log.get('tracebacks', '-')} tracebacks"])
    return table(["serve", "result"], rows)


def oom_text(oom) -> str:
    text = problem(oom)
    if text is not None:
        return text
    if "skipped" in oom:
        return f"skipped ({oom['skipped']})"
    full, after = oom["while_full"], oom["after_freeing"]
    return (f"{'handled' if oom['passed'] else 'NOT HANDLED'}: while full {full['status']} "
            f"({full.get('error', '')}), after freeing {after['status']}")


def targets_section(model: dict, judged: bool) -> str:
    rows = []
    for target in model["bandwidth"]["targets"].values():
        result = verdict(target["met"]) if judged else "not judged (dry run)"
        rows.append([target["limit"], fmt(target["value"]), result])
    return table(["target", "value", "result"], rows)


def render(report: dict) -> str:
    check, env = report["check"], report["environment"]
    versions = env["versions"]
    parts = [f"NExT-Chat GPU check{' (DRY RUN)' if check['dry_run'] else ''}: {env['device'].get('name')} "
             f"({check['device']}), torch {versions.get('torch')}, transformers {versions.get('transformers')}, "
             f"{check['size']} {check['dtype']}, {env['date_utc']} UTC, wall {check.get('wall_s', '-')} s"]
    phases = report["phases"]
    for name, section in (("parity", parity_section), ("model", None), ("serve", serve_section)):
        phase = phases.get(name)
        text = problem(phase)
        if text is not None:
            parts.append(f"{name}: {text}")
        elif name == "model":
            parts += [components_section(phase), bandwidth_section(phase), modes_section(phase),
                      targets_section(phase, not check["dry_run"])]
        else:
            parts.append(section(phase))
    parts.append(f"exit code {check.get('exit_code', '-')}: {check.get('summary', '')}")
    return "\n\n".join(parts)
