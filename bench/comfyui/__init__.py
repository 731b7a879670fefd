"""The ComfyUI benchmark: mgc's node pack against DisTorch2, ComfyUI's own partial loading and an
all-resident baseline, each driving a real ComfyUI's sampler (see ``run.py``)."""
