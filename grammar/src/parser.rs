//! From text to the typed AST. pest's pairs never leave this module.

use pest::Parser as _;
use pest::iterators::Pair;

use crate::ast::{Allocation, Amount, Entry, Mode, Target, VirtualVram};
use crate::error::{AllocationError, AllocationErrorKind as Kind};
use mgc_core::{Bandwidth, ByteUnit, Bytes, Decimal, Device, DeviceKind, Span, Spanned};

mod generated {
    #[derive(pest_derive::Parser)]
    #[grammar = "allocation.pest"]
    pub(super) struct AllocationParser;
}

use generated::{AllocationParser, Rule};

/// Where a pest pair was written; pairs never leave this module, their spans do.
fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let span = pair.as_span();
    Span::new(span.start(), span.end())
}

/// Parses an allocation string, returning every error it has, in order of position.
pub fn parse_allocation(text: &str) -> Result<Allocation, Vec<AllocationError>> {
    if text.trim().is_empty() {
        return Err(vec![AllocationError::new(Kind::Empty, Span::new(0, text.len()))]);
    }
    let top = AllocationParser::parse(Rule::allocation, text)
        .map_err(|_| vec![AllocationError::new(Kind::Stray { text: text.to_owned() }, Span::new(0, text.len()))])?
        .next();
    let mut errors = Vec::new();
    let mut parts = top.into_iter().flat_map(Pair::into_inner).filter(|p| p.as_rule() != Rule::EOI);
    let allocation = match (parts.next(), parts.next()) {
        (Some(pair), _) if pair.as_rule() == Rule::bare => bare(pair, &mut errors),
        (Some(pair), full_pair) => {
            let full_pair = full_pair.filter(|p| p.as_rule() == Rule::full);
            let full_string = full_pair.map(|p| full(p, &mut errors));
            entries(text, pair, full_string, &mut errors)
        }
        (None, _) => None,
    };
    match allocation {
        Some(allocation) if errors.is_empty() => Ok(allocation),
        _ => {
            errors.sort_by_key(|e| e.span);
            Err(errors)
        }
    }
}

/// Parses a size such as `24gb` or `512 MiB` (a unit is required).
pub fn parse_size(text: &str) -> Result<Bytes, AllocationError> {
    let whole = Span::new(0, text.len());
    let bad = || AllocationError::new(Kind::BadSize { text: text.trim().to_owned() }, whole);
    let quantity = AllocationParser::parse(Rule::size, text)
        .map_err(|_| bad())?
        .next()
        .and_then(|size| size.into_inner().find(|p| p.as_rule() == Rule::quantity))
        .ok_or_else(bad)?;
    if quantity.clone().into_inner().all(|p| p.as_rule() != Rule::suffix) {
        let kind = Kind::MissingUnit { text: text.trim().to_owned() };
        return Err(AllocationError::new(kind, span_of(&quantity)));
    }
    match amount_of(quantity, true)? {
        Amount::Bytes(bytes) => Ok(bytes),
        Amount::Fraction(_) | Amount::Percent(_) | Amount::Rest => Err(bad()),
    }
}

/// Parses a bandwidth such as `27.2GB/s` (decimal units, as bandwidths are quoted).
pub fn parse_bandwidth(text: &str) -> Result<Bandwidth, AllocationError> {
    let whole = Span::new(0, text.len());
    let bad = || AllocationError::new(Kind::BadBandwidth { text: text.trim().to_owned() }, whole);
    let mut inner =
        AllocationParser::parse(Rule::bandwidth, text).map_err(|_| bad())?.next().ok_or_else(bad)?.into_inner();
    let (Some(number), Some(unit)) = (inner.next(), inner.next()) else {
        return Err(bad());
    };
    let factor: u64 = match unit.as_str().to_ascii_lowercase().as_str() {
        "b/s" => 1,
        "kb/s" => 1_000,
        "mb/s" => 1_000_000,
        "gb/s" => 1_000_000_000,
        "tb/s" => 1_000_000_000_000,
        "kib/s" => 1 << 10,
        "mib/s" => 1 << 20,
        "gib/s" => 1 << 30,
        "mbit/s" | "mbps" => 125_000,
        "gbit/s" | "gbps" => 125_000_000,
        _ => {
            let kind = Kind::UnknownRateUnit { unit: unit.as_str().to_owned() };
            return Err(AllocationError::new(kind, span_of(&unit)));
        }
    };
    let span = span_of(&number);
    let value = number_of(&number)?;
    match value.times_floor(factor) {
        Some(0) => Err(AllocationError::new(Kind::NotPositive { text: number.as_str().to_owned() }, span)),
        Some(rate) => Ok(Bandwidth(rate)),
        None => Err(AllocationError::new(Kind::TooLarge { text: number.as_str().to_owned() }, span)),
    }
}

/// Parses a device name such as `cuda:0`, with "did you mean" for near misses.
pub fn parse_device(text: &str) -> Result<Device, AllocationError> {
    device_of(text.trim()).map_err(|kind| AllocationError::new(kind, Span::new(0, text.len())))
}

fn bare(pair: Pair<'_, Rule>, errors: &mut Vec<AllocationError>) -> Option<Allocation> {
    let number = pair.into_inner().next()?;
    let span = span_of(&number);
    let value = match number_of(&number).and_then(|n| fraction(n, number.as_str(), span)) {
        Ok(value) => value,
        Err(error) => {
            errors.push(error);
            return None;
        }
    };
    let entries = vec![
        Entry { target: Spanned::new(Target::Compute, span), amount: Spanned::new(value, span), unused: None, span },
        Entry {
            target: Spanned::new(Target::Device(Device::Cpu), span),
            amount: Spanned::new(Amount::Rest, span),
            unused: None,
            span,
        },
    ];
    Some(Allocation {
        mode: Mode::Fraction,
        bare: true,
        entries,
        compute: None,
        virtual_vram: None,
        ignored_virtual_vram: None,
    })
}

/// What follows `#` in a DisTorch full string: the compute device, then maybe virtual VRAM.
struct FullString {
    /// Where the `#` and all after it were written.
    span: Span,
    compute: Option<Spanned<Device>>,
    virtual_vram: Option<VirtualVram>,
    /// Where the virtual VRAM part (`;4.0;cpu`) was written.
    virtual_span: Option<Span>,
}

fn full(pair: Pair<'_, Rule>, errors: &mut Vec<AllocationError>) -> FullString {
    let span = span_of(&pair);
    let mut string = FullString { span, compute: None, virtual_vram: None, virtual_span: None };
    let mut named_compute = false;
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::device => {
                named_compute = true;
                let device_span = span_of(&part);
                match device_of(part.as_str()) {
                    Ok(device) => string.compute = Some(Spanned::new(device, device_span)),
                    Err(kind) => errors.push(AllocationError::new(kind, device_span)),
                }
            }
            Rule::vram_part => {
                string.virtual_span = Some(span_of(&part));
                string.virtual_vram = virtual_vram(part, string.compute.as_ref(), errors);
            }
            _ => errors.push(AllocationError::new(Kind::Stray { text: part.as_str().to_owned() }, span_of(&part))),
        }
    }
    if !named_compute {
        errors.push(AllocationError::new(Kind::MissingCompute, Span::new(span.start, span.start + 1)));
    }
    string
}

/// `;4.0;cuda:0,cpu`: the bytes to move (GB when no unit is given, as DisTorch reads them) and
/// the donors, distinct and other than the compute device.
fn virtual_vram(
    pair: Pair<'_, Rule>,
    compute: Option<&Spanned<Device>>,
    errors: &mut Vec<AllocationError>,
) -> Option<VirtualVram> {
    let span = span_of(&pair);
    let (mut amount, mut donors_pair) = (None, None);
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::quantity => amount = Some(part),
            _ => donors_pair = Some(part),
        }
    }
    let amount = match amount {
        None => {
            errors.push(AllocationError::new(Kind::MissingVirtualVram, span));
            None
        }
        Some(quantity) => virtual_amount(quantity).map_err(|error| errors.push(error)).ok(),
    };
    let Some(donors_pair) = donors_pair else {
        errors.push(AllocationError::new(Kind::MissingDonor, Span::new(span.end, span.end)));
        return None;
    };
    let mut donors: Vec<Spanned<Device>> = Vec::new();
    let mut ok = true;
    for device in donors_pair.into_inner() {
        let device_span = span_of(&device);
        let donor = match device_of(device.as_str()) {
            Ok(donor) => donor,
            Err(kind) => {
                errors.push(AllocationError::new(kind, device_span));
                ok = false;
                continue;
            }
        };
        if let Some(first) = donors.iter().find(|d| d.value == donor) {
            let kind = Kind::DuplicateDevice { device: donor.to_string(), first: first.span };
            errors.push(AllocationError::new(kind, device_span));
            ok = false;
        } else if compute.is_some_and(|c| c.value == donor) {
            errors.push(AllocationError::new(Kind::DonorIsCompute { device: donor.to_string() }, device_span));
            ok = false;
        } else {
            donors.push(Spanned::new(donor, device_span));
        }
    }
    (ok && !donors.is_empty()).then_some(VirtualVram { amount: amount?, donors })
}

/// The amount of virtual VRAM: `4.0` is gigabytes, as DisTorch's `virtual_vram_gb`; a unit may
/// be written.
fn virtual_amount(quantity: Pair<'_, Rule>) -> Result<Spanned<Bytes>, AllocationError> {
    let span = span_of(&quantity);
    let text = quantity.as_str().trim().to_owned();
    let mut inner = quantity.clone().into_inner();
    let (Some(number), suffix) = (inner.next(), inner.next()) else {
        return Err(AllocationError::new(Kind::Stray { text }, span));
    };
    if suffix.is_some() {
        return match amount_of(quantity, false)? {
            Amount::Bytes(bytes) => Ok(Spanned::new(bytes, span)),
            Amount::Percent(_) | Amount::Fraction(_) | Amount::Rest => {
                Err(AllocationError::new(Kind::BadVirtualVram { text }, span))
            }
        };
    }
    let value = number_of(&number)?;
    if value.is_zero() {
        return Err(AllocationError::new(Kind::NotPositive { text }, span));
    }
    match value.times_floor(ByteUnit::Gib.bytes()) {
        Some(bytes) => Ok(Spanned::new(Bytes(bytes), span)),
        None => Err(AllocationError::new(Kind::TooLarge { text }, span)),
    }
}

fn entries(
    text: &str,
    pair: Pair<'_, Rule>,
    full: Option<FullString>,
    errors: &mut Vec<AllocationError>,
) -> Option<Allocation> {
    let before = errors.len();
    let mut entry_pairs: Vec<Pair<'_, Rule>> = pair.into_inner().collect();
    // DisTorch skips an empty last entry: `cuda:0,2.5gb;cpu,*;` is the string without the `;`.
    // Before `#`, an empty string of entries is virtual VRAM's.
    if entry_pairs.len() > 1 || full.is_some() {
        entry_pairs.pop_if(|last| last.as_str().trim().is_empty());
    }
    let mut parsed = Vec::new();
    for entry_pair in entry_pairs {
        if let Some(entry) = entry(text, entry_pair, errors) {
            parsed.push(entry);
        }
    }
    check_whole(&parsed, errors);
    let mode = parsed.iter().find_map(|e| e.amount.value.mode()).unwrap_or(Mode::Bytes);
    let mut allocation = Allocation {
        mode,
        bare: false,
        entries: parsed,
        compute: None,
        virtual_vram: None,
        ignored_virtual_vram: None,
    };
    if let Some(full) = full {
        allocation.compute = full.compute;
        if allocation.entries.is_empty() && errors.len() == before {
            // `#cuda:0;4.0;cpu`: virtual VRAM alone.
            match (full.virtual_vram, full.virtual_span) {
                (Some(virtual_vram), _) => {
                    allocation.mode = Mode::VirtualVram;
                    allocation.virtual_vram = Some(virtual_vram);
                }
                (None, Some(_)) => {}
                (None, None) => errors.push(AllocationError::new(Kind::NothingAroundHash, full.span)),
            }
        } else {
            allocation.ignored_virtual_vram = full.virtual_span;
        }
    }
    (errors.len() == before).then_some(allocation)
}

fn entry(text: &str, pair: Pair<'_, Rule>, errors: &mut Vec<AllocationError>) -> Option<Entry> {
    let whole = span_of(&pair);
    let (mut device, mut separator, mut amount, mut junk) = (None, None, None, None);
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::device => device = Some(part),
            Rule::separator => separator = Some(part),
            Rule::amount => amount = Some(part),
            _ => junk = Some(part),
        }
    }
    let Some(device) = device else {
        let error = match junk {
            Some(junk) if starts_like_amount(junk.as_str()) => {
                Kind::MissingDevice { text: junk.as_str().trim_start_matches(',').to_owned() }
            }
            Some(junk) => Kind::Stray { text: junk.as_str().to_owned() },
            None => {
                errors.push(AllocationError::new(Kind::EmptyEntry, empty_entry_span(text, whole)));
                return None;
            }
        };
        errors.push(AllocationError::new(error, whole));
        return None;
    };
    let device_span = span_of(&device);
    let target = device_of(device.as_str()).map_err(|kind| errors.push(AllocationError::new(kind, device_span)));

    let Some(separator) = separator else {
        let kind = match &junk {
            Some(junk) if starts_like_amount(junk.as_str()) => {
                Kind::MissingComma { device: device.as_str().to_owned(), amount: junk.as_str().trim().to_owned() }
            }
            _ => Kind::MissingAmount { device: device.as_str().to_owned() },
        };
        let span = junk.map_or(device_span, |j| Span::new(device_span.end, j.as_span().start()));
        errors.push(AllocationError::new(kind, span));
        return None;
    };
    let separator_span = span_of(&separator);
    if separator.into_inner().next().is_some() {
        errors.push(AllocationError::new(Kind::EqualsSeparator, separator_span));
    }
    if let Some(junk) = &junk {
        let text = junk.as_str();
        let kind =
            if text.starts_with(',') && text.trim_start_matches(',').trim_start().starts_with(char::is_alphabetic) {
                Kind::CommaBetweenEntries { text: text.to_owned() }
            } else {
                Kind::Stray { text: text.to_owned() }
            };
        errors.push(AllocationError::new(kind, span_of(junk)));
    }
    let Some(amount) = amount else {
        if junk.is_none() {
            let kind = Kind::MissingAmount { device: device.as_str().to_owned() };
            errors.push(AllocationError::new(kind, device_span));
        }
        return None;
    };
    let amount_span = span_of(&amount);
    let inner = amount.into_inner().next()?;
    let (value, unused) = if inner.as_rule() == Rule::marked {
        // `5gb*`: the device takes the rest; the amount is read, checked, and not used.
        let quantity = inner.into_inner().next()?;
        let quantity_span = span_of(&quantity);
        let written = amount_of(quantity, false).map_err(|error| errors.push(error)).ok()?;
        (Amount::Rest, Some(Spanned::new(written, quantity_span)))
    } else {
        (amount_of(inner, false).map_err(|error| errors.push(error)).ok()?, None)
    };
    Some(Entry {
        target: Spanned::new(Target::Device(target.ok()?), device_span),
        amount: Spanned::new(value, amount_span),
        unused,
        span: whole,
    })
}

/// The checks across entries: duplicates, more than one `*`, mixed modes, shares adding up.
fn check_whole(entries: &[Entry], errors: &mut Vec<AllocationError>) {
    let mut seen: Vec<(Target, Span)> = Vec::new();
    let mut rest: Option<Span> = None;
    let mut first_mode: Option<(Mode, Span)> = None;
    let mut mixed = false;
    for entry in entries {
        if let Some((_, first)) = seen.iter().find(|(t, _)| *t == entry.target.value) {
            let kind = Kind::DuplicateDevice { device: entry.target.value.to_string(), first: *first };
            errors.push(AllocationError::new(kind, entry.target.span));
        } else {
            seen.push((entry.target.value, entry.target.span));
        }
        match (entry.amount.value.mode(), first_mode) {
            (None, _) => match rest {
                Some(first) => errors.push(AllocationError::new(Kind::MultipleRest { first }, entry.amount.span)),
                None => rest = Some(entry.amount.span),
            },
            (Some(mode), None) => first_mode = Some((mode, entry.amount.span)),
            (Some(mode), Some((first, first_span))) if mode != first => {
                mixed = true;
                let kind = Kind::MixedModes { this: mode, first, first_span };
                errors.push(AllocationError::new(kind, entry.amount.span));
            }
            (Some(_), Some(_)) => {}
        }
    }
    if mixed || first_mode.map(|(m, _)| m) != Some(Mode::Ratio) {
        return;
    }
    let mut shares = entries.iter().filter_map(|e| match e.amount.value {
        Amount::Percent(p) => Some(p),
        _ => None,
    });
    let Some(sum) = shares.try_fold(Decimal::from_int(0), Decimal::checked_add) else {
        return;
    };
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return;
    };
    let span = Span::new(first.span.start, last.span.end);
    // Without `*`, shares are ratios normalised by their sum, as DisTorch reads them
    // (`8%;8%;4%` is 8:8:4); with `*`, they are percents and `*` takes what is left of 100.
    if rest.is_some() && sum >= Decimal::from_int(100) {
        errors.push(AllocationError::new(Kind::SharesLeaveNothing { sum: sum.to_string() }, span));
    }
}

/// The amount an `amount` or `quantity` pair says; zero is refused unless `zero_ok` (a size such
/// as a reserve may be zero; an allocation entry may not).
fn amount_of(pair: Pair<'_, Rule>, zero_ok: bool) -> Result<Amount, AllocationError> {
    let span = span_of(&pair);
    if pair.as_rule() == Rule::rest {
        return Ok(Amount::Rest);
    }
    let text = pair.as_str().trim();
    let mut inner = pair.into_inner();
    let Some(number) = inner.next() else {
        return Err(AllocationError::new(Kind::Stray { text: text.to_owned() }, span));
    };
    let not_positive = || AllocationError::new(Kind::NotPositive { text: text.to_owned() }, span);
    if number.as_str().starts_with('-') {
        return Err(not_positive());
    }
    let value = number_of(&number)?;
    let Some(suffix) = inner.next() else {
        return fraction(value, number.as_str(), span);
    };
    if suffix.as_str() == "%" {
        if value.is_zero() {
            return Err(not_positive());
        }
        if value > Decimal::from_int(100) {
            return Err(AllocationError::new(Kind::PercentOver100 { text: text.to_owned() }, span));
        }
        return Ok(Amount::Percent(value));
    }
    let Some(unit) = ByteUnit::parse(suffix.as_str()) else {
        let unit = suffix.as_str().to_owned();
        let suggestion = closest(&unit.to_ascii_lowercase(), ByteUnit::ALL_SPELLINGS.iter().copied(), 1);
        return Err(AllocationError::new(Kind::UnknownUnit { unit, suggestion }, span_of(&suffix)));
    };
    if value.is_zero() {
        return if zero_ok { Ok(Amount::Bytes(Bytes(0))) } else { Err(not_positive()) };
    }
    match value.times_floor(unit.bytes()) {
        Some(0) => Err(AllocationError::new(Kind::LessThanOneByte { text: text.to_owned() }, span)),
        Some(bytes) => Ok(Amount::Bytes(Bytes(bytes))),
        None => Err(AllocationError::new(Kind::TooLarge { text: text.to_owned() }, span)),
    }
}

/// An unsigned number; a `-` sign is "not positive".
fn number_of(pair: &Pair<'_, Rule>) -> Result<Decimal, AllocationError> {
    let text = pair.as_str();
    let span = span_of(pair);
    if text.starts_with('-') {
        return Err(AllocationError::new(Kind::NotPositive { text: text.to_owned() }, span));
    }
    Decimal::parse(text.trim_start_matches('+'))
        .ok_or_else(|| AllocationError::new(Kind::TooLarge { text: text.to_owned() }, span))
}

fn fraction(value: Decimal, text: &str, span: Span) -> Result<Amount, AllocationError> {
    if value.is_zero() {
        return Err(AllocationError::new(Kind::NotPositive { text: text.to_owned() }, span));
    }
    if value > Decimal::from_int(1) {
        let as_bytes = (value >= Decimal::from_int(1)).then(|| format!("{value}gb"));
        return Err(AllocationError::new(Kind::FractionOutOfRange { text: text.to_owned(), as_bytes }, span));
    }
    Ok(Amount::Fraction(value))
}

fn device_of(text: &str) -> Result<Device, Kind> {
    let (name, ordinal) = match text.split_once(':') {
        Some((name, ordinal)) => (name, Some(ordinal)),
        None => (text, None),
    };
    let lower = name.to_ascii_lowercase();
    let Some(kind) = DeviceKind::from_name(name) else {
        if DeviceKind::from_name(&lower).is_some() {
            return Err(Kind::UppercaseDevice { name: text.to_owned() });
        }
        return Err(Kind::UnknownDevice { name: text.to_owned(), suggestion: device_suggestion(&lower, ordinal) });
    };
    match (kind.has_ordinal(), ordinal) {
        (true, None | Some("")) => Err(Kind::MissingOrdinal { name: name.to_owned() }),
        (true, Some(digits)) => digits
            .parse::<u32>()
            .map(|n| kind.with_ordinal(n))
            .map_err(|_| Kind::OrdinalTooLarge { text: digits.to_owned() }),
        (false, Some(_)) => Err(Kind::UnexpectedOrdinal { name: name.to_owned() }),
        (false, None) => Ok(kind.with_ordinal(0)),
    }
}

/// "Did you mean": common other names for our devices, then near misses by edit distance.
fn device_suggestion(name: &str, ordinal: Option<&str>) -> Option<String> {
    let alias = match name {
        "gpu" | "nvidia" | "cuda0" | "cuda1" => Some(DeviceKind::Cuda),
        "rocm" | "amd" => Some(DeviceKind::Hip),
        "dml" => Some(DeviceKind::DirectMl),
        "ram" | "host" | "system" | "memory" => Some(DeviceKind::Cpu),
        "metal" | "apple" => Some(DeviceKind::Mps),
        "file" | "ssd" | "nvme" | "hdd" => Some(DeviceKind::Disk),
        _ => None,
    };
    let kind = alias.or_else(|| {
        let names = DeviceKind::ALL.map(DeviceKind::name);
        let best = closest(name, names.iter().copied(), 2)?;
        DeviceKind::from_name(&best)
    })?;
    let ordinal = ordinal.filter(|o| !o.is_empty()).or_else(|| {
        // `cuda0` → `cuda:0`
        let digits = name.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
    });
    Some(match (kind.has_ordinal(), ordinal) {
        (true, Some(n)) => format!("{}:{n}", kind.name()),
        _ => kind.example(),
    })
}

/// The candidate nearest to `word` within `max` edits, if there is one.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>, max: usize) -> Option<String> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

fn starts_like_amount(text: &str) -> bool {
    let text = text.trim_start_matches(',').trim_start();
    text.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '*' || c == '-')
}

/// A zero-width entry is pointed at through its neighbouring `;`.
fn empty_entry_span(text: &str, whole: Span) -> Span {
    if !whole.is_empty() {
        return whole;
    }
    if whole.start > 0 && text.get(whole.start - 1..whole.start) == Some(";") {
        Span::new(whole.start - 1, whole.start)
    } else {
        Span::new(whole.start, (whole.start + 1).min(text.len()))
    }
}
