"""One model inside a real ComfyUI, for one or more systems (DisTorch2 patches ComfyUI's model
management when it loads, so run.py never puts it in a process with another system): for each run
(a system and an amount offloaded), load the model with that system's loader node, sample it with
ComfyUI's own sampler (``comfy.sample.sample``, what the KSampler node runs: euler, simple, cfg 1,
the model's usual latent size), and write one line of JSON per run, a record or why it did not run.

Each step is timed at the sampler's callback (after the device finished: CUDA is synchronized
there), so a step is one forward of the model and the sampler's arithmetic.

Usage: python bench/comfyui/worker.py JOB.json (written by run.py).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_comfyui(job: dict):
    """Imports ComfyUI from its checkout (on the CPU with `--cpu`), points its model folders at
    the benchmark's models and loads the custom node packs the system needs, as ComfyUI loads
    custom nodes, from a folder of its own (DisTorch2 looks for ComfyUI-GGUF there)."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, job["comfyui"])
    sys.argv = ["main.py"] + (["--cpu"] if job["device"] == "cpu" else [])
    import comfy.options

    comfy.options.enable_args_parsing()
    # ComfyUI's `utils` package before its `nodes`, as its main.py has it: `nodes` puts `comfy/`
    # first on the path, where `comfy/utils.py` would then shadow the package (ComfyUI-MultiGPU
    # imports ComfyUI's server, which needs it).
    import utils.extra_config  # noqa: F401
    import folder_paths
    import nodes as comfy_nodes

    folder_paths.add_model_folder_path("diffusion_models", os.path.dirname(job["model"]["path"]), is_default=True)
    if job["packs"].get("ComfyUI-MultiGPU"):
        # ComfyUI's own extra nodes (TripleCLIPLoader and the like), which DisTorch2 wraps.
        asyncio.run(comfy_nodes.init_builtin_extra_nodes())
        # Headless: no prompt server runs, which ComfyUI-MultiGPU reads as `instance` being None.
        import server

        if not hasattr(server.PromptServer, "instance"):
            server.PromptServer.instance = None
    packs = tempfile.mkdtemp(prefix="mgc-bench-nodes-")
    folder_paths.folder_names_and_paths["custom_nodes"] = ([packs], set())
    for name in ("ComfyUI-GGUF", "ComfyUI-MultiGPU"):
        source = job["packs"].get(name)
        if source:
            os.symlink(os.path.abspath(source), os.path.join(packs, name))
            if not asyncio.run(comfy_nodes.load_custom_node(os.path.join(packs, name))):
                raise RuntimeError(f"ComfyUI could not load the custom nodes in `{source}`")
    _detect_flux_width()
    return comfy_nodes


def _detect_flux_width():
    """ComfyUI detects a Flux's block counts from its keys but takes its width (3072) as given;
    the tiny test Flux is narrower, so its width, heads and rotary axes are read from its shapes.
    A Flux of the real width is left as ComfyUI detects it."""
    import comfy.model_detection

    detect = comfy.model_detection.detect_unet_config

    def sized(sd, prefix, *args, **kwargs):
        cfg = detect(sd, prefix, *args, **kwargs)
        key = prefix + "img_in.weight"
        if cfg and cfg.get("image_model") == "flux" and key in sd and sd[key].shape[0] != cfg.get("hidden_size"):
            width = sd[key].shape[0]
            head = sd[prefix + "double_blocks.0.img_attn.norm.key_norm.scale"].shape[0]
            cfg.update(hidden_size=width, num_heads=width // head, axes_dim=[head // 8, head * 7 // 16, head * 7 // 16],
                       context_in_dim=sd[prefix + "txt_in.weight"].shape[1])
        return cfg

    comfy.model_detection.detect_unet_config = sized


def load(job: dict, run: dict, comfy_nodes):
    """The model loaded by the system's own loader node, for this run's amount offloaded."""
    system, model = run["system"], job["model"]
    name, gguf = os.path.basename(model["path"]), model["gguf"]
    if system == "mgc":
        from comfyui import loaders, nodes as pack

        plan = pack.LoadPlan().load(plan_name="", plan_path=run["plan"])[0]
        # A connected plan decides; the allocation inputs beside it are not used.
        inputs = {"unet_name": name, "plan": plan, "compute_device": job["device"], "virtual_vram_gb": 0.0,
                  "donor_device": "cpu", "expert_mode_allocations": ""}
        if gguf:
            return loaders.UnetLoaderGGUFMGC().load(**inputs)[0]
        return loaders.UNETLoaderMGC().load(weight_dtype="default", **inputs)[0]
    if system == "distorch2":
        node = comfy_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUFDisTorch2MultiGPU" if gguf else "UNETLoaderDisTorch2MultiGPU"]
        options = {} if gguf else {"weight_dtype": "default"}
        return node().override(unet_name=name, compute_device=job["device"], virtual_vram_gb=run["virtual_vram_gb"],
                               donor_device=run["donor"], expert_mode_allocations="", eject_models=True, **options)[0]
    if gguf:
        return comfy_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]().load_unet(name)[0]
    return comfy_nodes.UNETLoader().load_unet(name, "default")[0]


def keep_on_device(keep_bytes):
    """ComfyUI's own partial loading (its lowvram path) with ``keep_bytes`` of the model on the
    compute device: the budget ComfyUI would work out from free memory is replaced by this one.
    ``None`` leaves ComfyUI to decide (a full load where the model fits)."""
    import comfy.model_management as mm

    original = getattr(mm.LoadedModel, "_mgc_bench_original", mm.LoadedModel.model_load)
    mm.LoadedModel._mgc_bench_original = original

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        if keep_bytes is not None:
            lowvram_model_memory = max(int(keep_bytes), 1)  # 0 would mean "all of it" to ComfyUI
        return original(self, lowvram_model_memory, force_patch_weights=force_patch_weights)

    mm.LoadedModel.model_load = model_load


def conditioning(module, model: dict, seed: int):
    """Random text conditioning of the shapes the model takes (T5 for Flux with CLIP-L's pooled
    vector and a guidance of 3.5; umT5 for Wan): the text encoders are not what is measured."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if model["family"] == "flux":
        context = torch.randn(1, model["text_tokens"], module.txt_in.in_features, generator=g)
        pooled = torch.randn(1, module.vector_in.in_layer.in_features, generator=g)
        return [[context, {"pooled_output": pooled, "guidance": 3.5}]]
    context = torch.randn(1, model["text_tokens"], module.text_embedding[0].in_features, generator=g)
    return [[context, {}]]


def off_device_bytes(module, compute) -> int:
    """Bytes of the model's weights that live off the compute device: what a system copies to it
    every forward."""
    import torch

    compute = torch.device(compute)
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors if t.device != compute)


def sample(job: dict, patcher):
    """Samples the model with ComfyUI's sampler; returns each step's seconds (the first from the
    start, which includes ComfyUI's loading of the model), the peaks and the output's abs-sum."""
    import comfy.sample
    import torch

    model, steps, seed = job["model"], job["steps"], job["seed"]
    cuda = job["device"].startswith("cuda")
    module = patcher.model.diffusion_model
    positive = conditioning(module, model, seed)
    latent = comfy.sample.fix_empty_latent_channels(patcher, torch.zeros(model["latent"]))
    noise = comfy.sample.prepare_noise(latent, seed)
    marks = []
    peaks = {}

    def callback(_step, _x0, _x, _total):
        if cuda:
            torch.cuda.synchronize()
            if not marks:
                peaks["load"] = torch.cuda.max_memory_allocated()
                torch.cuda.reset_peak_memory_stats()
        marks.append(time.perf_counter())

    forwards = []
    handle = module.register_forward_pre_hook(lambda *_: forwards.append(1))
    start = time.perf_counter()
    try:
        out = comfy.sample.sample(patcher, noise, steps, job.get("cfg", 1.0), "euler", "simple", positive, positive, latent,
                                  denoise=1.0, callback=callback, disable_pbar=True, seed=seed)
    finally:
        handle.remove()
    times = [b - a for a, b in zip([start] + marks, marks)]
    steps_peak = torch.cuda.max_memory_allocated() if cuda else None
    peak = max(peaks.get("load", 0), steps_peak) if cuda else None
    return times, len(forwards), peak, steps_peak, float(out.float().abs().sum())


def run_one(job: dict, run: dict, comfy_nodes) -> dict:
    import comfy.model_management as mm
    import torch

    from bench.comfyui.records import make_record

    system, model = run["system"], job["model"]
    keep_on_device(model["bytes"] - run["offloaded_bytes"] if system == "comfyui" and run["offloaded_bytes"] else None)
    at_start = None
    if job["device"].startswith("cuda"):
        at_start = torch.cuda.memory_allocated()  # what an earlier run left behind: 0 expected
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    patcher = load(job, run, comfy_nodes)
    load_seconds = time.perf_counter() - started
    applied = getattr(patcher, "mgc_plan", None)
    copied_before = applied.stats.bytes if applied else 0
    try:
        times, forwards, peak, steps_peak, checksum = sample(job, patcher)
        module = patcher.model.diffusion_model
        if applied is not None:
            copied = (applied.stats.bytes - copied_before) // max(forwards, 1)
        elif job["device"].startswith("cuda"):
            copied = off_device_bytes(module, job["device"])
        else:
            copied = None  # a CPU computing: nothing is copied to it
        figures = dict(allocation=run["allocation"], peak_vram_bytes=peak, peak_vram_steps_bytes=steps_peak,
                       copied_bytes=copied, load_seconds=load_seconds, output_abs_sum=checksum,
                       vram_at_start_bytes=at_start)
        if system == "mgc":
            figures.update(predicted_step_seconds=run["predicted_step_seconds"],
                           predicted_peak_bytes=run["predicted_peak_bytes"])
        if system == "resident" and job.get("trace"):
            trace(job, patcher)
        return make_record(model["name"], system, run["offloaded_bytes"], model["bytes"], times, **figures)
    finally:
        del patcher
        unload(applied, mm)


def trace(job: dict, patcher, steps: int = 3) -> None:
    """Where an all-resident step's time goes, for the cost model: ``steps`` more steps under
    torch's profiler (the first not counted), written beside the job's records as
    ``….trace.json``: the wall time, the device's busy time (its kernels' own time) and the
    kernels that took most of it. A failure is logged, never the run's."""
    from torch.profiler import ProfilerActivity, profile

    try:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if job["device"].startswith("cuda") else [])
        short = dict(job, steps=steps)
        with profile(activities=activities) as prof:
            times, *_ = sample(short, patcher)
        events = prof.key_averages()

        def device_us(e):
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0

        kernels = sorted((e for e in events if device_us(e) > 0), key=device_us, reverse=True)
        busy = sum(device_us(e) for e in kernels) / 1e6
        wall = sum(times[1:])
        doc = {"model": job["model"]["name"], "steps_timed": len(times) - 1, "wall_seconds": wall,
               "device_busy_seconds": busy, "device_busy_fraction": busy / wall if wall else None,
               "cpu_ops": int(sum(e.count for e in events if device_us(e) == 0)),
               "top_kernels": [{"name": e.key[:160], "seconds": device_us(e) / 1e6, "count": e.count}
                               for e in kernels[:25]]}
        with open(job["out"] + ".trace.json", "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
    except Exception:  # noqa: BLE001
        traceback.print_exc()


def settle_memory(job: dict) -> None:
    """After a run, with its frames gone: whatever a reference cycle still holds of its model is
    collected, and the GPU's cached blocks are given back, so that the next run starts empty."""
    gc.collect()
    if job["device"].startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def unload(applied, mm) -> None:
    """Frees the run's model for the next run; a failure here is logged, the run's record kept."""
    try:
        if applied is not None:
            applied.remove()
        mm.unload_all_models()
        gc.collect()
        mm.soft_empty_cache()
    except Exception:  # noqa: BLE001
        traceback.print_exc()


def main(job_path: str) -> int:
    with open(job_path, "r", encoding="utf-8") as f:
        job = json.load(f)
    out = open(job["out"], "a", encoding="utf-8")

    def emit(kind, value):
        out.write(json.dumps({kind: value}) + "\n")
        out.flush()

    def skip(run, reason):
        emit("skipped", {"model": job["model"]["name"], "system": run["system"],
                         "offloaded_bytes": run["offloaded_bytes"] if run else None, "reason": reason})

    try:
        comfy_nodes = start_comfyui(job)
    except Exception as e:  # noqa: BLE001 (every failure is reported as a skipped run)
        traceback.print_exc()
        for run in job["runs"]:
            skip(run, f"ComfyUI did not start: {type(e).__name__}: {e}")
        return 1
    failed = 0
    for run in job["runs"]:
        if job.get("deadline") and time.time() > job["deadline"]:
            skip(run, "out of time (the run's time budget was spent)")
            continue
        try:
            emit("record", run_one(job, run, comfy_nodes))
            settle_memory(job)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            skip(run, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
