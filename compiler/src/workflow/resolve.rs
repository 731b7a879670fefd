//! `spec_to_workflow`: checks every name and value of a raw workflow, collecting every error.

use std::cell::OnceCell;
use std::path::Path;

use mgc_core::profile::Profile;
use mgc_core::{Bytes, Device, Hardware, Span, Spanned};
use mgc_grammar::{
    Allocation, AllocationError, AllocationErrorKind, Amount, Entry, Mode, Target, VirtualVram, parse_allocation,
    parse_bandwidth, parse_device, parse_size,
};
use toml::Spanned as TomlSpanned;

use super::{
    DeviceSpec, Link, LinkKind, ModelSpec, Origin, Placement, Prefetch, Sampling, Schedule, SpecError,
    SpecErrorKind as Kind, Workflow, Workload,
};
use crate::spec::toml_to_spec;
use crate::spec::{
    RawDevice, RawLink, RawModel, RawSchedule, RawWorkflow, RawWorkload, span_of, string_content_offset,
};

/// Parses and resolves a workflow file's text. `dir` is the folder model paths are relative to;
/// `detect` is called at most once, when the workflow leaves devices to detection.
pub fn toml_to_workflow(source: &str, dir: &Path, detect: &dyn Fn() -> Hardware) -> Result<Workflow, Vec<SpecError>> {
    let raw = toml_to_spec(source).map_err(|e| vec![e])?;
    spec_to_workflow(source, &raw, dir, detect)
}

/// Resolves a raw workflow into a [`Workflow`], or every error it has in order of position.
pub fn spec_to_workflow(
    source: &str,
    raw: &RawWorkflow,
    dir: &Path,
    detect: &dyn Fn() -> Hardware,
) -> Result<Workflow, Vec<SpecError>> {
    let mut r = Resolver {
        source,
        errors: Vec::new(),
        hardware: OnceCell::new(),
        detect,
        failed: Vec::new(),
        unnamed_device: false,
        unknown: Vec::new(),
    };
    let profile = raw.profile.as_ref().and_then(|p| r.profile(p, dir));
    let (devices, declared) = r.devices(&raw.device);
    let links = r.links(&raw.link, &devices, declared);
    let models = r.models(&raw.model, dir, &devices, declared);
    let workload = r.workload(raw.workload.as_ref());
    let sampling = r.sampling(raw.workload.as_ref());
    let schedule = r.schedule(raw.schedule.as_ref());
    let mut errors = r.errors;
    if errors.is_empty() {
        return Ok(Workflow { profile, devices, links, models, workload, sampling, schedule });
    }
    errors.sort_by_key(|e| e.span);
    Err(errors)
}

struct Resolver<'a> {
    source: &'a str,
    errors: Vec<SpecError>,
    hardware: OnceCell<Hardware>,
    detect: &'a dyn Fn() -> Hardware,
    /// Devices whose `[[device]]` has an error.
    failed: Vec<Device>,
    /// Whether a `[[device]]` name has an error.
    unnamed_device: bool,
    /// Devices reported as unknown, and the index of that error.
    unknown: Vec<(Device, usize)>,
}

impl Resolver<'_> {
    fn hardware(&self) -> &Hardware {
        self.hardware.get_or_init(|| (self.detect)())
    }

    fn push(&mut self, kind: Kind, span: Span) {
        self.errors.push(SpecError::new(kind, span));
    }

    /// An error found inside a string value, moved to its place in the file.
    fn push_inside(
        &mut self,
        value: &TomlSpanned<String>,
        error: AllocationError,
        wrap: impl FnOnce(AllocationError) -> Kind,
    ) {
        let error = self.moved_into_file(value, error);
        let span = error.span;
        self.push(wrap(error), span);
    }

    fn moved_into_file(&self, value: &TomlSpanned<String>, error: AllocationError) -> AllocationError {
        match string_content_offset(self.source, value) {
            Some(offset) => error.shifted(offset),
            // An escaped string: its characters do not map one to one, so point at the whole value.
            None => error.collapsed_to(span_of(value)),
        }
    }

    fn profile(&mut self, value: &TomlSpanned<String>, dir: &Path) -> Option<Profile> {
        let path = value.get_ref().clone();
        let text = match mgc_core::read_text(&dir.join(&path), mgc_core::read::PROFILE_LIMIT, "profile") {
            Ok(text) => text,
            Err(error) => {
                self.push(Kind::UnreadableProfile { path, error }, span_of(value));
                return None;
            }
        };
        Profile::from_toml(&text).map_err(|error| self.push(Kind::BadProfile { path, error }, span_of(value))).ok()
    }

    fn device_name(&mut self, value: &TomlSpanned<String>) -> Option<Device> {
        parse_device(value.get_ref()).map_err(|e| self.push_inside(value, e, |error| Kind::Value { error })).ok()
    }

    fn size(&mut self, value: &TomlSpanned<String>) -> Option<Bytes> {
        parse_size(value.get_ref()).map_err(|e| self.push_inside(value, e, |error| Kind::Value { error })).ok()
    }

    fn devices(&mut self, raw: &[TomlSpanned<RawDevice>]) -> (Vec<DeviceSpec>, bool) {
        let mut devices: Vec<(DeviceSpec, Span)> = Vec::new();
        for item in raw {
            let item = item.get_ref();
            let name_span = span_of(&item.name);
            let device = self.device_name(&item.name);
            let memory = self.size(&item.memory);
            let reserve = item.reserve.as_ref().map(|r| (self.size(r), span_of(r)));
            let Some(device) = device else {
                // Whichever device this meant, uses of it are not "undeclared": its name is the error.
                self.unnamed_device = true;
                continue;
            };
            if device == Device::Disk {
                self.push(Kind::DiskDeclared, name_span);
                continue;
            }
            if let Some((_, first)) = devices.iter().find(|(d, _)| d.device == device) {
                let first = *first;
                self.push(Kind::DuplicateDevice { device: device.to_string(), first }, name_span);
                continue;
            }
            match self.device_spec(item, device, memory, reserve, name_span) {
                Some(spec) => devices.push((spec, name_span)),
                // Declared, with an error already reported: its uses are not errors of their own.
                None => self.failed.push(device),
            }
        }
        let declared = !raw.is_empty();
        let mut devices: Vec<DeviceSpec> = devices.into_iter().map(|(d, _)| d).collect();
        let wanted: Vec<_> = if declared {
            // The CPU is always there: when not declared, its memory is detected.
            let cpu = devices.iter().any(|d| d.device == Device::Cpu) || self.failed.contains(&Device::Cpu);
            if cpu { Vec::new() } else { vec![Device::Cpu] }
        } else {
            self.hardware().devices.iter().map(|d| d.device).collect()
        };
        for device in wanted {
            if let Some(found) = self.hardware().find(device) {
                devices.push(DeviceSpec {
                    device,
                    memory: found.memory,
                    reserve: super::default_reserve(device, found.memory),
                    origin: Origin::Detected,
                    flops: None,
                    class_flops: crate::compile::cost::class_flops(&found.description),
                    class: crate::compile::cost::class_of(&found.description).map(|(c, _)| c),
                    span: None,
                });
            }
        }
        (devices, declared)
    }

    /// The rest of a `[[device]]` whose name is fine, or `None` once its errors are reported.
    fn device_spec(
        &mut self,
        item: &RawDevice,
        device: Device,
        memory: Option<Bytes>,
        reserve: Option<(Option<Bytes>, Span)>,
        name_span: Span,
    ) -> Option<DeviceSpec> {
        let memory = memory?;
        if memory.get() == 0 {
            self.push(Kind::NoMemory { device: device.to_string() }, span_of(&item.memory));
            return None;
        }
        let reserve = match reserve {
            None => super::default_reserve(device, memory),
            Some((None, _)) => return None,
            Some((Some(reserve), span)) if reserve > memory => {
                let kind = Kind::ReserveTooLarge {
                    device: device.to_string(),
                    reserve: reserve.to_string(),
                    memory: memory.to_string(),
                };
                self.push(kind, span);
                return None;
            }
            Some((Some(reserve), _)) => reserve,
        };
        let flops = match &item.tflops {
            None => None,
            Some(t) if t.get_ref().is_finite() && *t.get_ref() > 0.0 => Some(t.get_ref() * 1e12),
            Some(t) => {
                self.push(Kind::NotPositive { key: "tflops" }, span_of(t));
                return None;
            }
        };
        let class = match &item.gpu {
            None => None,
            Some(gpu) => match crate::compile::cost::class_of(gpu.get_ref()) {
                Some(found) => Some(found),
                None => {
                    self.push(Kind::UnknownGpu { gpu: gpu.get_ref().clone() }, span_of(gpu));
                    return None;
                }
            },
        };
        Some(DeviceSpec {
            device,
            memory,
            reserve,
            origin: Origin::Declared,
            flops,
            class_flops: class.map(|(_, f)| f),
            class: class.map(|(c, _)| c),
            span: Some(name_span),
        })
    }

    /// Checks that a device the workflow uses exists; `disk` always does. A device is reported
    /// once, at its first use, with its other uses; a device whose declaration has an error, or
    /// any device while a `[[device]]` name has one, is not reported again.
    fn known(&mut self, device: Device, span: Span, devices: &[DeviceSpec], declared: bool) -> bool {
        if device == Device::Disk || devices.iter().any(|d| d.device == device) {
            return true;
        }
        if self.failed.contains(&device) || (declared && self.unnamed_device) {
            return false;
        }
        if let Some(&(_, index)) = self.unknown.iter().find(|(d, _)| *d == device)
            && let Some(SpecError { kind: Kind::Undeclared { also, .. } | Kind::NotDetected { also, .. }, .. }) =
                self.errors.get_mut(index)
        {
            also.push(span);
            return false;
        }
        let names = |list: &mut dyn Iterator<Item = Device>| list.map(|d| d.to_string()).collect::<Vec<_>>();
        let kind = if declared {
            Kind::Undeclared {
                device: device.to_string(),
                declared: names(&mut devices.iter().map(|d| d.device)),
                also: Vec::new(),
            }
        } else {
            let hardware = self.hardware();
            Kind::NotDetected {
                device: device.to_string(),
                detected: names(&mut hardware.devices.iter().map(|d| d.device)),
                notes: hardware.notes.clone(),
                also: Vec::new(),
            }
        };
        self.unknown.push((device, self.errors.len()));
        self.push(kind, span);
        false
    }

    fn links(&mut self, raw: &[TomlSpanned<RawLink>], devices: &[DeviceSpec], declared: bool) -> Vec<Link> {
        let mut links: Vec<(Link, Span)> = Vec::new();
        for item in raw {
            let link_span = span_of(item);
            let item = item.get_ref();
            let between_span = span_of(&item.between);
            let ends: Vec<(Option<Device>, Span)> =
                item.between.get_ref().iter().map(|end| (self.device_name(end), span_of(end))).collect();
            let rate = self.link_rate(item, link_span);
            let [(Some(a), span_a), (Some(b), span_b)] = ends[..] else {
                if ends.len() != 2 {
                    self.push(Kind::LinkArity { count: ends.len() }, between_span);
                }
                continue;
            };
            if a == b {
                self.push(Kind::LinkToItself { device: a.to_string() }, between_span);
                continue;
            }
            if a == Device::Disk || b == Device::Disk {
                self.push(Kind::LinkToDisk, between_span);
                continue;
            }
            let known_a = self.known(a, span_a, devices, declared);
            let known_b = self.known(b, span_b, devices, declared);
            if !(known_a && known_b) {
                continue;
            }
            if let Some((_, first)) = links.iter().find(|(l, _)| l.between == [a, b] || l.between == [b, a]) {
                let kind = Kind::DuplicateLink { a: a.to_string(), b: b.to_string(), first: *first };
                self.push(kind, between_span);
                continue;
            }
            if let Some((kind, bandwidth)) = rate {
                links.push((Link { between: [a, b], kind, bandwidth }, between_span));
            }
        }
        links.into_iter().map(|(l, _)| l).collect()
    }

    fn link_rate(&mut self, item: &RawLink, span: Span) -> Option<(Option<LinkKind>, mgc_core::Bandwidth)> {
        match (&item.kind, &item.bandwidth) {
            (None, None) => {
                self.push(Kind::LinkWithoutRate, span);
                None
            }
            (Some(_), Some(bandwidth)) => {
                self.push(Kind::LinkWithBoth, span_of(bandwidth));
                None
            }
            (Some(kind), None) => match LinkKind::from_name(kind.get_ref()) {
                Some(found) => Some((Some(found), found.bandwidth())),
                None => {
                    let names = LinkKind::ALL.map(LinkKind::name);
                    let lower = kind.get_ref().to_ascii_lowercase().replace(['.', ' ', '_'], "");
                    let by_prefix = names.iter().find(|n| !lower.is_empty() && n.starts_with(lower.as_str()));
                    let suggestion = by_prefix.map(|n| (*n).to_owned()).or_else(|| {
                        names
                            .iter()
                            .map(|n| (strsim::damerau_levenshtein(&lower, n), *n))
                            .filter(|(d, _)| *d <= 3)
                            .min_by_key(|(d, _)| *d)
                            .map(|(_, n)| n.to_owned())
                    });
                    self.push(Kind::UnknownLinkKind { kind: kind.get_ref().clone(), suggestion }, span_of(kind));
                    None
                }
            },
            (None, Some(bandwidth)) => parse_bandwidth(bandwidth.get_ref())
                .map(|b| (None, b))
                .map_err(|e| self.push_inside(bandwidth, e, |error| Kind::Value { error }))
                .ok(),
        }
    }

    fn models(
        &mut self,
        raw: &[TomlSpanned<RawModel>],
        dir: &Path,
        devices: &[DeviceSpec],
        declared: bool,
    ) -> Vec<ModelSpec> {
        if raw.is_empty() {
            self.push(Kind::NoModels, Span::new(0, 0));
        }
        let mut models = Vec::new();
        // Every model's name, even a model with errors: two models of one name are a mistake of
        // their own.
        let mut names: Vec<(String, Span)> = Vec::new();
        for item in raw {
            let item = item.get_ref();
            let model = self.model(item, dir, devices, declared);
            let name = item.name.get_ref().trim();
            let name_span = span_of(&item.name);
            if let Some((_, first)) = names.iter().find(|(n, _)| !name.is_empty() && n == name) {
                let first = *first;
                self.push(Kind::DuplicateModel { name: name.to_owned(), first }, name_span);
                continue;
            }
            names.push((name.to_owned(), name_span));
            models.extend(model);
        }
        models
    }

    fn model(&mut self, item: &RawModel, dir: &Path, devices: &[DeviceSpec], declared: bool) -> Option<ModelSpec> {
        let name = item.name.get_ref().trim().to_owned();
        let mut ok = true;
        if name.is_empty() {
            self.push(Kind::EmptyName, span_of(&item.name));
            ok = false;
        }
        let file = dir.join(item.file.get_ref());
        let file_span = span_of(&item.file);
        match fs_err::metadata(&file) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                self.push(Kind::NotAFile { path: item.file.get_ref().clone() }, file_span);
                ok = false;
            }
            Err(_) => {
                self.push(Kind::MissingFile { path: item.file.get_ref().clone() }, file_span);
                ok = false;
            }
        }
        let compute_span = span_of(&item.compute);
        let compute = self.device_name(&item.compute).filter(|&device| {
            if device == Device::Disk {
                self.push(Kind::DiskCompute, compute_span);
                return false;
            }
            self.known(device, compute_span, devices, declared)
        });
        let placement = match &item.placement {
            None => Some(Placement::Auto),
            Some(p) => match p.get_ref().as_str() {
                "auto" => Some(Placement::Auto),
                "tail" => Some(Placement::Tail),
                "head" => Some(Placement::Head),
                other => {
                    self.push(Kind::UnknownPlacement { placement: other.to_owned() }, span_of(p));
                    None
                }
            },
        };
        let auto_budgets = item.virtual_vram.is_none()
            && item.allocation.as_ref().is_none_or(|value| value.get_ref().trim() == "auto");
        let (allocation, allocation_span, allocation_offset) = match &item.allocation {
            Some(value) if value.get_ref().trim() == "auto" => {
                if let Some(virtual_vram) = &item.virtual_vram {
                    self.push(Kind::AllocationAndVirtualVram { model: name.clone() }, span_of(virtual_vram));
                }
                (compute.map(everything_on), span_of(value), None)
            }
            Some(value) => {
                let parsed = parse_allocation(value.get_ref()).map_err(|errors| {
                    for error in errors {
                        self.push_inside(value, error, |error| Kind::Allocation { model: name.clone(), error });
                    }
                });
                let offset = string_content_offset(self.source, value);
                let allocation = parsed.ok().filter(|allocation| {
                    let mut all_known = true;
                    for used in allocation.devices() {
                        let span = offset.map_or(span_of(value), |o| used.span.shifted(o));
                        all_known &= self.known(used.value, span, devices, declared);
                    }
                    all_known && self.same_compute(&name, allocation, compute, value, offset)
                });
                if let Some(virtual_vram) = &item.virtual_vram {
                    self.push(Kind::AllocationAndVirtualVram { model: name.clone() }, span_of(virtual_vram));
                }
                (allocation, span_of(value), offset)
            }
            None => match &item.virtual_vram {
                Some(amount) => {
                    let allocation = self.virtual_vram(amount, item.donor.as_ref(), compute, devices, declared);
                    (allocation, span_of(amount), None)
                }
                None => (compute.map(everything_on), compute_span, None),
            },
        };
        if let (Some(donor), None) = (&item.donor, &item.virtual_vram) {
            self.push(Kind::DonorWithoutVirtualVram, span_of(donor));
        }
        if !ok {
            return None;
        }
        Some(ModelSpec {
            name,
            file,
            compute: compute?,
            allocation: allocation?,
            placement: placement?,
            auto_budgets,
            allocation_span,
            allocation_offset,
        })
    }

    fn workload(&mut self, raw: Option<&TomlSpanned<RawWorkload>>) -> Workload {
        let default = Workload::Resolution { width: 1024, height: 1024, frames: 1, batch: 1 };
        let Some(raw) = raw else { return default };
        let span = span_of(raw);
        let raw = raw.get_ref();
        let mut positive = |value: Option<&TomlSpanned<i64>>, key: &'static str, default: u64| match value {
            None => default,
            Some(v) => match u64::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.push(Kind::NotPositive { key }, span_of(v));
                    default
                }
            },
        };
        let batch = positive(raw.batch.as_ref(), "batch", 1);
        let frames = positive(raw.frames.as_ref(), "frames", 1);
        let tokens = raw.tokens.as_ref().map(|t| positive(Some(t), "tokens", 4096));
        let resolution = raw.resolution.as_ref().map(|r| {
            let dims: Vec<u64> = r.get_ref().iter().map(|d| positive(Some(d), "resolution", 1024)).collect();
            (dims, span_of(r))
        });
        match (tokens, resolution) {
            (Some(_), Some(_)) => {
                self.push(Kind::TokensAndResolution, span);
                default
            }
            (Some(tokens), None) => Workload::Tokens { tokens, batch },
            (None, Some((dims, span))) => match dims[..] {
                [width, height] => Workload::Resolution { width, height, frames, batch },
                _ => {
                    self.push(Kind::ResolutionShape, span);
                    default
                }
            },
            (None, None) => match default {
                Workload::Resolution { width, height, .. } => Workload::Resolution { width, height, frames, batch },
                tokens @ Workload::Tokens { .. } => tokens,
            },
        }
    }

    fn sampling(&mut self, raw: Option<&TomlSpanned<RawWorkload>>) -> Sampling {
        let Some(raw) = raw.map(TomlSpanned::get_ref) else { return Sampling::default() };
        let mut positive = |value: Option<&TomlSpanned<i64>>, key: &'static str| {
            value.and_then(|v| match u64::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.push(Kind::NotPositive { key }, span_of(v));
                    None
                }
            })
        };
        let steps = positive(raw.steps.as_ref(), "steps");
        let text_tokens = positive(raw.text_tokens.as_ref(), "text_tokens");
        let cfg = raw.cfg.as_ref().and_then(|v| {
            let number = match v.get_ref() {
                toml::Value::Float(f) => Some(*f),
                toml::Value::Integer(n) => Some(*n as f64),
                _ => None,
            };
            match number {
                Some(f) if f.is_finite() && f > 0.0 => Some(f),
                _ => {
                    self.push(Kind::NotPositive { key: "cfg" }, span_of(v));
                    None
                }
            }
        });
        Sampling { steps, cfg, text_tokens, frames_span: raw.frames.as_ref().map(span_of) }
    }

    fn schedule(&mut self, raw: Option<&TomlSpanned<RawSchedule>>) -> Schedule {
        let mut schedule = Schedule::default();
        let Some(raw) = raw else { return schedule };
        let raw = raw.get_ref();
        if let Some(prefetch) = &raw.prefetch {
            match prefetch.get_ref() {
                toml::Value::String(s) if s == "auto" => schedule.prefetch = Prefetch::Auto,
                toml::Value::Integer(n) => match u32::try_from(*n) {
                    Ok(layers) => schedule.prefetch = Prefetch::Layers(layers),
                    Err(_) => self.push(Kind::BadPrefetch, span_of(prefetch)),
                },
                _ => self.push(Kind::BadPrefetch, span_of(prefetch)),
            }
        }
        if let Some(batch_below) = &raw.batch_below
            && let Some(bytes) = self.size(batch_below)
        {
            schedule.batch_below = bytes;
        }
        schedule
    }
}

/// DisTorch's full strings name their compute device: it must be the model's.
impl Resolver<'_> {
    fn same_compute(
        &mut self,
        model: &str,
        allocation: &Allocation,
        compute: Option<Device>,
        value: &TomlSpanned<String>,
        offset: Option<usize>,
    ) -> bool {
        match (&allocation.compute, compute) {
            (Some(written), Some(compute)) if written.value != compute => {
                let span = offset.map_or(span_of(value), |o| written.span.shifted(o));
                let kind = Kind::ComputeMismatch {
                    model: model.to_owned(),
                    written: written.value.to_string(),
                    compute: compute.to_string(),
                };
                self.push(kind, span);
                false
            }
            _ => true,
        }
    }

    /// `virtual_vram = "4gb"` with `donor = "cpu"` or a list: the allocation
    /// `#<compute>;4gb;<donors>`, DisTorch's virtual VRAM.
    fn virtual_vram(
        &mut self,
        amount: &TomlSpanned<String>,
        donor: Option<&TomlSpanned<toml::Value>>,
        compute: Option<Device>,
        devices: &[DeviceSpec],
        declared: bool,
    ) -> Option<Allocation> {
        let bytes = self.size(amount).filter(|bytes| {
            let positive = bytes.get() > 0;
            if !positive {
                self.push(Kind::NotPositive { key: "virtual_vram" }, span_of(amount));
            }
            positive
        });
        let names: Vec<TomlSpanned<String>> = match donor {
            None => vec![TomlSpanned::new(0..0, "cpu".to_owned())],
            Some(value) => {
                let range = value.span();
                let strings = match value.get_ref() {
                    toml::Value::String(name) => Some(vec![name.clone()]),
                    toml::Value::Array(items) if !items.is_empty() => {
                        items.iter().map(|item| item.as_str().map(str::to_owned)).collect()
                    }
                    _ => None,
                };
                let Some(strings) = strings else {
                    self.push(Kind::BadDonor, span_of(value));
                    return None;
                };
                strings.into_iter().map(|name| TomlSpanned::new(range.clone(), name)).collect()
            }
        };
        let span = donor.map_or(span_of(amount), span_of);
        let mut donors: Vec<Spanned<Device>> = Vec::new();
        let mut ok = true;
        for name in &names {
            let Some(device) = self.device_name(name) else {
                ok = false;
                continue;
            };
            let problem = if donors.iter().any(|d| d.value == device) {
                Some(AllocationErrorKind::DuplicateDevice { device: device.to_string(), first: span })
            } else if compute == Some(device) {
                Some(AllocationErrorKind::DonorIsCompute { device: device.to_string() })
            } else {
                None
            };
            if let Some(problem) = problem {
                self.push(Kind::Value { error: AllocationError::new(problem, span) }, span);
                ok = false;
            } else if self.known(device, span, devices, declared) {
                donors.push(Spanned::new(device, span));
            } else {
                ok = false;
            }
        }
        let compute = compute?;
        let amount = Spanned::new(bytes?, span_of(amount));
        ok.then(|| Allocation {
            mode: Mode::VirtualVram,
            bare: false,
            entries: Vec::new(),
            compute: Some(Spanned::new(compute, span)),
            virtual_vram: Some(VirtualVram { amount, donors }),
            ignored_virtual_vram: None,
        })
    }
}

/// The allocation of a model that names none: all of it on its compute device.
fn everything_on(compute: Device) -> Allocation {
    let span = Span::new(0, 0);
    Allocation {
        mode: Mode::Bytes,
        bare: false,
        entries: vec![Entry {
            target: Spanned::new(Target::Device(compute), span),
            amount: Spanned::new(Amount::Rest, span),
            unused: None,
            span,
        }],
        compute: None,
        virtual_vram: None,
        ignored_virtual_vram: None,
    }
}
