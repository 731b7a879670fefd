"""The ComfyUI benchmark, one command: mgc's node pack against DisTorch2, ComfyUI's own partial
loading (lowvram) and all resident, each sampling the same model in a real ComfyUI.

    python bench/comfyui/run.py --comfyui COMFYUI [--multigpu MULTIGPU] [--gguf GGUF] \\
        [--models tiny|gpu|NAME,...] [--device cuda:0|cpu] [--steps N] [--out DIR]

For each model (made on the spot with random weights, see ``models.py``) and each amount
offloaded (``--fractions`` of the model: 0, ¼, ½, ¾ and all of it), each system loads the model
with its own loader node and samples it (``worker.py``: all resident and mgc in one process,
DisTorch2 in another, since it patches ComfyUI's model management, ComfyUI's lowvram in a third):

- **mgc**: the node pack's UNet loader with the plan compiled for that amount from the same
  virtual-VRAM string DisTorch2 gets (``#cuda:0;GB;cpu``; all of it: ``cpu,*``);
- **distorch2**: ComfyUI-MultiGPU's DisTorch2 UNet loader with that virtual VRAM, donor ``cpu``;
- **comfyui**: ComfyUI's own loader and its partial loading, the rest of the model kept on the GPU;
- **resident**: ComfyUI's own loader, the whole model on the GPU (offloaded 0), the baseline.

Writes ``results.json`` (records, machine, versions), ``results.md`` (the table) and, per model,
``curve-MODEL.svg`` (and ``.png`` where the ``mgc`` package renders PNG) into ``--out``. On a CPU
(``--device cpu``) the same runs go through the same code with the `disk` tier as the donor where
the system has one: a smoke test of the plumbing, whose timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import List, Optional

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bench.comfyui import curve, records  # noqa: E402
from bench.comfyui.models import ROOT, ModelSpec, make_model, resolve_models  # noqa: E402

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
# The sampler's CFG (the worker samples with it): 1, one pass a step.
CFG = 1.0


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/comfyui/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=os.environ.get("MGC_COMFYUI"), help="a ComfyUI checkout (default: $MGC_COMFYUI)")
    p.add_argument("--multigpu", default=os.environ.get("MGC_COMFYUI_MULTIGPU"),
                   help="a ComfyUI-MultiGPU checkout, for DisTorch2 (default: $MGC_COMFYUI_MULTIGPU)")
    p.add_argument("--gguf", default=os.environ.get("MGC_COMFYUI_GGUF"),
                   help="a ComfyUI-GGUF checkout, for the GGUF models (default: $MGC_COMFYUI_GGUF)")
    p.add_argument("--models", default="tiny", help="model names or sets: tiny (the default), gpu, or names")
    p.add_argument("--systems", default=",".join(records.SYSTEMS), help="which systems to run")
    p.add_argument("--device", default=None, help="the compute device: cuda:0 where there is one, else cpu")
    p.add_argument("--steps", type=int, default=4, help="sampler steps per run (at least 2; the first is not timed)")
    p.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS),
                   help="amounts offloaded, as fractions of the model")
    p.add_argument("--work", default="bench-work", help="where the models and plans are written")
    p.add_argument("--out", default="bench-results", help="where the results are written")
    p.add_argument("--profile", default=None,
                   help="a profile written by `mgc probe` on this machine, for mgc's predictions (default: none)")
    p.add_argument("--trace", action="store_true",
                   help="profile a few all-resident steps of each model (torch's profiler): where a step's time goes")
    p.add_argument("--budget-seconds", type=float, default=None,
                   help="stop starting runs after this long; those left are listed as not run")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_args(args: argparse.Namespace) -> None:
    """Stops with a message naming what to set, before anything is written."""
    if not args.comfyui or not os.path.isdir(os.path.join(args.comfyui, "comfy")):
        _fail("name a ComfyUI checkout with --comfyui or MGC_COMFYUI (a folder holding `comfy/`)")
    for flag, path, marker in (("--multigpu", args.multigpu, "distorch_2.py"), ("--gguf", args.gguf, "nodes.py")):
        if path and not os.path.isfile(os.path.join(path, marker)):
            _fail(f"`{path}` given to {flag} is not that checkout (it has no `{marker}`)")
    if args.steps < 2:
        _fail(f"--steps {args.steps}: at least 2 are needed, since the first step is not timed")
    unknown = [s for s in args.systems.split(",") if s not in records.SYSTEMS]
    if unknown:
        _fail(f"unknown system `{unknown[0]}` in --systems: one of {', '.join(records.SYSTEMS)}")
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
    except ValueError:
        _fail(f"--fractions `{args.fractions}`: write numbers from 0 to 1, separated by commas")
    if any(not 0 <= f <= 1 for f in fractions):
        _fail(f"--fractions `{args.fractions}`: each must be from 0 to 1")
    try:
        args.model_specs = resolve_models(args.models)
    except ValueError as e:
        _fail(str(e))
    args.fraction_list = sorted(set(fractions))


def probe_machine(device: str) -> dict:
    """The machine in words and figures: the compute device, and on a GPU its driver and the
    pinned host-to-device bandwidth (the median of five 1 GiB copies)."""
    import torch

    machine = {"device": device, "platform": platform.platform(), "processor": platform.machine(),
               "gpu": None, "driver": None, "gpu_memory_bytes": None, "pinned_gb_per_s": None}
    if not device.startswith("cuda"):
        return machine
    props = torch.cuda.get_device_properties(device)
    machine.update(gpu=props.name, gpu_memory_bytes=props.total_memory, driver=_driver())
    host = torch.empty(1 << 30, dtype=torch.uint8).pin_memory()
    target = torch.empty_like(host, device=device)
    times = []
    for _ in range(6):
        torch.cuda.synchronize()
        start = time.perf_counter()
        target.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    machine["pinned_gb_per_s"] = host.numel() / sorted(times[1:])[2] / 1e9
    del host, target
    torch.cuda.empty_cache()
    return machine


def _driver() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git_commit(path: Optional[str]) -> Optional[str]:
    """The commit of a checkout with its own `.git` (not of a repository it was unpacked into)."""
    if not path or not os.path.exists(os.path.join(path, ".git")):
        return None
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=30)
        return out.stdout.strip() if out.returncode == 0 else None
    except OSError:
        return None


def _pyproject_version(path: Optional[str]) -> Optional[str]:
    try:
        with open(os.path.join(path, "pyproject.toml"), "r", encoding="utf-8") as f:
            for line in f:
                if line.startswith("version") and line.count('"') >= 2:
                    return line.split('"')[1]
    except (OSError, TypeError):
        return None
    return None


def versions(args: argparse.Namespace) -> dict:
    """torch, ComfyUI, the packs and mgc, each with its commit where the checkout has one (a
    checkout copied without `.git` can name it in MGC_COMFYUI_COMMIT and the like)."""
    import mgc
    import torch

    comfyui = None
    try:
        with open(os.path.join(args.comfyui, "comfyui_version.py"), "r", encoding="utf-8") as f:
            comfyui = f.read().split('"')[1]
    except (OSError, IndexError):
        pass

    def with_commit(version, path, env):
        commit = os.environ.get(env) or _git_commit(path)
        return " ".join(v for v in (version, f"({commit})" if commit else None) if v) or None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "comfyui": with_commit(comfyui, args.comfyui, "MGC_COMFYUI_COMMIT"),
        "comfyui_multigpu": with_commit(_pyproject_version(args.multigpu), args.multigpu, "MGC_COMFYUI_MULTIGPU_COMMIT")
        if args.multigpu else None,
        "comfyui_gguf": with_commit(_pyproject_version(args.gguf), args.gguf, "MGC_COMFYUI_GGUF_COMMIT")
        if args.gguf else None,
        "mgc": with_commit(mgc.__version__, ROOT, "MGC_COMMIT"),
    }


def model_bytes(path: str) -> int:
    """The diffusion model's bytes, as mgc reads them from the file's header."""
    import mgc

    return int(mgc.inspect(path)["models"][0]["bytes"])


def _gib(n: int) -> str:
    return f"{n / 2**30:.6f}"


def allocation(compute: str, donor: str, offloaded: int, total: int) -> str:
    """The DisTorch-shaped string for an amount offloaded: nothing (`COMPUTE,*`), a virtual VRAM
    (`#COMPUTE;GB;DONOR`, as DisTorch2 writes it), or all of it on the donor (`DONOR,*`)."""
    if offloaded <= 0:
        return f"{compute},*"
    if offloaded >= total:
        return f"{donor},*"
    return f"#{compute};{_gib(offloaded)};{donor}"


def workflow_toml(path: str, compute: str, alloc: str, tokens: int, machine: dict,
                  profile: Optional[str] = None, text_tokens: Optional[int] = None, steps: Optional[int] = None,
                  cfg: float = 1.0) -> str:
    """A one-model workflow for mgc: the model, its allocation, the workload sampled (image and
    text tokens, steps, and the CFG, which decides how many passes a step makes), the machine's
    profile where one is given and, on a GPU, the link at the bandwidth just probed."""
    text = f"profile = {json.dumps(os.path.abspath(profile))}\n\n" if profile else ""
    workload = f"tokens = {tokens}\ncfg = {cfg:.1f}\n"
    if text_tokens:
        workload += f"text_tokens = {text_tokens}\n"
    if steps:
        workload += f"steps = {steps}\n"
    text += (f'[[model]]\nname = "model"\nfile = {json.dumps(os.path.abspath(path))}\ncompute = "{compute}"\n'
             f'allocation = "{alloc}"\n\n[workload]\n{workload}\n[schedule]\nprefetch = "auto"\n')
    if machine.get("pinned_gb_per_s"):
        text += f'\n[[link]]\nbetween = ["cpu", "{compute}"]\nbandwidth = "{machine["pinned_gb_per_s"]:.2f}GB/s"\n'
    return text


def tokens_of(spec: ModelSpec) -> int:
    """Image tokens of one forward: the latent's positions over the 2×2 patches."""
    n = 1
    for d in spec.latent[2:]:
        n *= d
    return n // 4


def mgc_runs(spec: ModelSpec, path: str, runs: List[dict], compute: str, machine: dict, plans: str,
             profile: Optional[str] = None, steps: Optional[int] = None) -> List[dict]:
    """Compiles each run's plan with the `mgc` package; adds the plan and its predictions."""
    import mgc

    os.makedirs(plans, exist_ok=True)
    for run in runs:
        plan = mgc.compile(workflow_toml(path, compute, run["allocation"], tokens_of(spec), machine, profile,
                                          spec.text_tokens, steps, CFG))
        run["plan"] = os.path.join(plans, f"{spec.name}-{run['offloaded_bytes']}.plan.json")
        with open(run["plan"], "w", encoding="utf-8") as f:
            json.dump(plan, f, separators=(",", ":"))
        run["predicted_step_seconds"] = plan["predicted"]["step_seconds"]
        run["predicted_peak_bytes"] = next(d["peak_bytes"] for d in plan["devices"] if d["name"] == compute)
    return runs


def runs_for(args, spec: ModelSpec, path: str, total: int, machine: dict) -> List[dict]:
    """Every run of a model: a system, an amount offloaded and that system's inputs for it.
    Resident runs once (nothing offloaded); DisTorch2 and ComfyUI with nothing offloaded are
    ComfyUI's own full load, the resident run, and are not repeated."""
    compute = args.device
    amounts = sorted({round(f * total) for f in args.fraction_list})
    runs = []
    for system in [s for s in records.SYSTEMS[::-1] if s in args.systems.split(",")]:
        donor = "disk" if compute == "cpu" and system == "mgc" else "cpu"
        chosen = [0] if system == "resident" else [a for a in amounts if a > 0 or system == "mgc"]
        mine = [{"system": system, "offloaded_bytes": a, "allocation": allocation(compute, donor, a, total),
                 "virtual_vram_gb": float(_gib(a)), "donor": donor} for a in chosen]
        if system == "mgc":
            mine = mgc_runs(spec, path, mine, compute, machine, os.path.join(args.work, "plans"), args.profile,
                            args.steps)
        runs += mine
    return runs


def jobs_for(args, spec: ModelSpec, runs: List[dict]) -> List[dict]:
    """The worker processes of a model, in the order they run (so that, when time runs out, what
    is missing is ComfyUI's lowvram, the slowest): all resident and mgc, then DisTorch2 alone (it
    patches ComfyUI's model management), then ComfyUI's lowvram. A job that cannot run says why."""
    jobs = []
    for group in (("resident", "mgc"), ("distorch2",), ("comfyui",)):
        mine = [r for r in runs if r["system"] in group]
        if not mine:
            continue
        packs = {"ComfyUI-GGUF": args.gguf if spec.gguf else None,
                 "ComfyUI-MultiGPU": args.multigpu if "distorch2" in group else None}
        job = {"name": "-".join(s for s in group if any(r["system"] == s for r in mine)), "runs": mine, "packs": packs}
        if "distorch2" in group and not args.multigpu:
            job["missing"] = "no ComfyUI-MultiGPU checkout given (--multigpu)"
        if spec.gguf and not args.gguf:
            job["missing"] = "no ComfyUI-GGUF checkout given (--gguf), which loads GGUF models"
        jobs.append(job)
    return jobs


def run_job(args, spec: ModelSpec, path: str, total: int, job: dict, deadline: Optional[float]) -> tuple:
    """Runs one job's worker; returns its records and skipped runs."""
    name = f"{spec.name}-{job['name']}"
    out = os.path.join(args.work, "jobs", f"{name}.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out):
        os.remove(out)
    full = dict(job, comfyui=os.path.abspath(args.comfyui), device=args.device, steps=args.steps, seed=args.seed,
                cfg=CFG, trace=args.trace, out=out, deadline=deadline,
                model={"name": spec.name, "path": os.path.abspath(path), "gguf": spec.gguf, "family": spec.family,
                       "latent": list(spec.latent), "text_tokens": spec.text_tokens, "bytes": total})
    job_path = os.path.join(args.work, "jobs", f"{name}.json")
    with open(job_path, "w", encoding="utf-8") as f:
        json.dump(full, f, indent=1)
    log = os.path.join(args.work, "jobs", f"{name}.log")
    print(f"== {spec.name} / {job['name']}: {len(job['runs'])} run(s), log in {log}", flush=True)
    timeout = None if deadline is None else max(30.0, deadline - time.time() + 30)
    with open(log, "w", encoding="utf-8") as logf:
        try:
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "comfyui", "worker.py"), job_path],
                           stdout=logf, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            print(f"   {name}: stopped after {timeout:.0f} s", flush=True)
    got, skipped = [], []
    if os.path.exists(out):
        with open(out, "r", encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                (got if "record" in entry else skipped).append(entry.get("record") or entry.get("skipped"))
    done = {(r["system"], r["offloaded_bytes"]) for r in got + skipped}
    skipped += [{"model": spec.name, "system": r["system"], "offloaded_bytes": r["offloaded_bytes"],
                 "reason": f"the worker stopped before this run (see {os.path.basename(log)})"}
                for r in job["runs"] if (r["system"], r["offloaded_bytes"]) not in done]
    for r in got:
        print(f"   {r['system']} offloaded {r['offloaded_bytes'] / 1e9:.3g} GB: {r['step_seconds'] * 1e3:.1f} ms/step",
              flush=True)
    for s in skipped:
        print(f"   {s['system']} not run: {s['reason']}", flush=True)
    return got, skipped


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    check_args(args)
    import torch

    args.device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    deadline = time.time() + args.budget_seconds if args.budget_seconds else None
    machine = probe_machine(args.device)
    all_records, skipped = [], []
    for spec in args.model_specs:
        if deadline and time.time() > deadline:
            skipped.append({"model": spec.name, "system": "all", "offloaded_bytes": None,
                            "reason": "out of time (the run's time budget was spent)"})
            continue
        print(f"== {spec.name}: writing the model (random weights)", flush=True)
        path = make_model(spec, os.path.join(args.work, "models"))
        total = model_bytes(path)
        for job in jobs_for(args, spec, runs_for(args, spec, path, total, machine)):
            if deadline and time.time() > deadline:
                job["missing"] = "out of time (the run's time budget was spent)"
            if "missing" in job:
                skipped += [{"model": spec.name, "system": r["system"], "offloaded_bytes": r["offloaded_bytes"],
                             "reason": job["missing"]} for r in job["runs"]]
                continue
            got, missed = run_job(args, spec, path, total, job, deadline)
            all_records += got
            skipped += missed
    records.attach_lower_bounds(all_records, (machine["pinned_gb_per_s"] or 0) * 1e9 or None)
    settings = {"steps": args.steps, "sampler": "euler", "scheduler": "simple", "cfg": CFG, "seed": args.seed,
                "fractions": args.fraction_list,
                "models": {s.name: {"workload": s.workload, "latent": list(s.latent), "text_tokens": s.text_tokens,
                                    "format": "gguf q8_0" if s.gguf else "safetensors bf16"} for s in args.model_specs},
                "date": time.strftime("%Y-%m-%d", time.gmtime())}
    doc = records.document(all_records, machine, versions(args), settings, skipped)
    write_results(doc, args.out)
    return 0 if all_records else 1


def write_results(doc: dict, out: str) -> None:
    """results.json, results.md and each model's curve (SVG, and PNG where it can be rendered)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        f.write(records.to_json(doc))
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(records.markdown(doc))
    models = list(dict.fromkeys(r["model"] for r in doc["records"]))
    for model in models:
        svg = curve.svg_curve(doc["records"], model, f"{model}: seconds per step against GB offloaded")
        with open(os.path.join(out, f"curve-{model}.svg"), "w", encoding="utf-8") as f:
            f.write(svg)
        with open(os.path.join(out, f"curve-{model}.png"), "wb") as f:
            f.write(curve.render_png(svg))
    print(f"results in {out}: results.json, results.md, " + ", ".join(f"curve-{m}.svg, curve-{m}.png" for m in models),
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
