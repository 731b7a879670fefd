//! Meaning of allocation strings: exact bytes, modes, and which mistakes are caught.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use mgc_core::{Bytes, Decimal, Device};
use mgc_grammar::{
    Allocation, AllocationErrorKind as Kind, Amount, Mode, Target, parse_allocation, parse_bandwidth, parse_size,
};

fn notes(text: &str) -> Vec<String> {
    ok(text).notes().into_iter().map(|n| n.text).collect()
}

fn ok(text: &str) -> Allocation {
    match parse_allocation(text) {
        Ok(a) => a,
        Err(e) => panic!("`{text}` should parse, got {e:?}"),
    }
}

fn kinds(text: &str) -> Vec<Kind> {
    match parse_allocation(text) {
        Ok(a) => panic!("`{text}` should fail, got {a:?}"),
        Err(errors) => errors.into_iter().map(|e| e.kind).collect(),
    }
}

fn bytes_of(a: &Allocation) -> Vec<(String, Option<u64>)> {
    a.entries
        .iter()
        .map(|e| {
            let b = match e.amount.value {
                Amount::Bytes(b) => Some(b.get()),
                _ => None,
            };
            (e.target.value.to_string(), b)
        })
        .collect()
}

#[test]
fn bytes_are_exact_and_binary() {
    let a = ok("cuda:0,2.5gb;cuda:1,3g;cpu,*");
    assert_eq!(a.mode, Mode::Bytes);
    assert_eq!(
        bytes_of(&a),
        vec![("cuda:0".into(), Some(2_684_354_560)), ("cuda:1".into(), Some(3_221_225_472)), ("cpu".into(), None)]
    );
    for (text, bytes) in [
        ("cpu,1b", 1),
        ("cpu,1k", 1024),
        ("cpu,1KB", 1024),
        ("cpu,1KiB", 1024),
        ("cpu,1.5m", 1_572_864),
        ("cpu,.5gb", 536_870_912),
        ("cpu,2.5tb", 2_748_779_069_440),
        ("cpu,1.3g", 1_395_864_371), // 1395864371.2 bytes, floored as DisTorch's int() would
        ("cpu, 4 gb ", 4 << 30),
        ("cpu,4.gb", 4 << 30),
    ] {
        assert_eq!(bytes_of(&ok(text)), vec![("cpu".into(), Some(bytes))], "{text}");
    }
}

#[test]
fn distorch_strings_keep_their_meaning() {
    // Strings from the DisTorch documentation and example workflows.
    let a = ok("cuda:0,4gb;cpu,*");
    assert_eq!(bytes_of(&a), vec![("cuda:0".into(), Some(4 << 30)), ("cpu".into(), None)]);
    let a = ok("cuda:0,25%;cpu,75%");
    assert_eq!(a.mode, Mode::Ratio);
    let a = ok("cuda:0,0.5;cpu,0.2");
    assert_eq!(a.mode, Mode::Fraction);
    assert_eq!(a.entries[1].amount.value, Amount::Fraction(Decimal::new(2, 1)));
}

#[test]
fn bare_fraction_is_the_compute_device_with_the_rest_on_cpu() {
    let a = ok("0.8");
    assert!(a.bare);
    assert_eq!(a.entries[0].target.value, Target::Compute);
    assert_eq!(a.entries[0].amount.value, Amount::Fraction(Decimal::new(8, 1)));
    assert_eq!(a.entries[1].target.value, Target::Device(Device::Cpu));
    assert_eq!(a.entries[1].amount.value, Amount::Rest);
    assert_eq!(kinds("1.5"), vec![Kind::FractionOutOfRange { text: "1.5".into(), as_bytes: Some("1.5gb".into()) }]);
}

#[test]
fn devices_and_order_are_kept() {
    let a = ok("hip:1,1gb;xpu:0,1gb;npu:2,1gb;directml:0,1gb;mps,1gb;disk,*");
    let devices: Vec<Device> = a.devices().map(|d| d.value).collect();
    assert_eq!(
        devices,
        vec![Device::Hip(1), Device::Xpu(0), Device::Npu(2), Device::DirectMl(0), Device::Mps, Device::Disk]
    );
}

#[test]
fn every_error_is_reported_at_once_with_its_span() {
    let text = "gpu:0,4tbs;cuda:1,-2gb;cpu,*;disk,*";
    let errors = parse_allocation(text).unwrap_err();
    let found: Vec<(&str, String)> = errors.iter().map(|e| (&text[e.span.range()], e.kind.to_string())).collect();
    assert_eq!(
        found,
        vec![
            ("gpu:0", "unknown device `gpu:0`".to_owned()),
            ("tbs", "unknown unit `tbs`".to_owned()),
            ("-2gb", "amount `-2gb` is not positive".to_owned()),
            ("*", "more than one `*`".to_owned()),
        ]
    );
    assert_eq!(errors[0].kind.help().unwrap(), "did you mean `cuda:0`?");
    assert!(errors[1].kind.help().unwrap().starts_with("did you mean `tb`?"));
}

#[test]
fn mistakes_by_kind() {
    assert!(matches!(kinds("cuda:0,4gb;;cpu,*")[..], [Kind::EmptyEntry]));
    assert!(matches!(kinds(";cuda:0,4gb")[..], [Kind::EmptyEntry]));
    assert!(matches!(kinds("cuda:0,4gb;cuda:0,2gb")[..], [Kind::DuplicateDevice { .. }]));
    assert!(matches!(
        kinds("cuda:0,4gb;cpu,50%")[..],
        [Kind::MixedModes { this: Mode::Ratio, first: Mode::Bytes, .. }]
    ));
    assert!(matches!(kinds("cuda:0,150%;cpu,*")[..], [Kind::PercentOver100 { .. }]));
    assert!(matches!(kinds("cuda:0,60%;cuda:1,50%;cpu,*")[..], [Kind::SharesLeaveNothing { .. }]));
    assert!(matches!(kinds("cuda:0,60%;cuda:1,40%;cpu,*")[..], [Kind::SharesLeaveNothing { .. }]));
    assert!(matches!(kinds("cuda:0,0gb;cpu,*")[..], [Kind::NotPositive { .. }]));
    assert!(matches!(kinds("cuda:0,0.1b;cpu,*")[..], [Kind::LessThanOneByte { .. }]));
    assert!(matches!(kinds("cuda:0,4;cpu,*")[..], [Kind::FractionOutOfRange { .. }]));
    assert!(matches!(kinds("cuda,4gb")[..], [Kind::MissingOrdinal { .. }]));
    assert!(matches!(kinds("cpu:0,4gb")[..], [Kind::UnexpectedOrdinal { .. }]));
    assert!(matches!(kinds("CUDA:0,4gb")[..], [Kind::UppercaseDevice { .. }]));
    assert!(matches!(kinds("cuda:0=4gb")[..], [Kind::EqualsSeparator]));
    assert!(matches!(kinds("cuda:0 4gb")[..], [Kind::MissingComma { .. }]));
    assert!(matches!(kinds("cuda:0")[..], [Kind::MissingAmount { .. }]));
    assert!(matches!(kinds("cuda:0,4gb,cpu,*")[..], [Kind::CommaBetweenEntries { .. }]));
    assert!(matches!(kinds("4gb;cpu,*")[..], [Kind::MissingDevice { .. }]));
    assert!(matches!(kinds("cuda:0,4gb!")[..], [Kind::Stray { .. }]));
    assert!(matches!(kinds("")[..], [Kind::Empty]));
    assert!(matches!(kinds("cuda:0,99999999999999999999gb")[..], [Kind::TooLarge { .. }]));
    assert!(matches!(kinds("cuda:0,20000000000tb")[..], [Kind::TooLarge { .. }]));
}

/// DisTorch's own examples (its README, its log lines) and the strings its nodes build, read as
/// DisTorch reads them.
#[test]
fn distorch_forms() {
    // `*` anywhere in an amount makes the device take the rest; the amount is not used.
    let a = ok("cuda:0,500mb;cuda:1,3.0g;cpu,5gb*");
    assert_eq!(a.mode, Mode::Bytes);
    assert_eq!(
        bytes_of(&a),
        vec![("cuda:0".into(), Some(500 << 20)), ("cuda:1".into(), Some(3 << 30)), ("cpu".into(), None)]
    );
    assert_eq!(a.rest().unwrap().unused.as_ref().unwrap().value, Amount::Bytes(Bytes(5 << 30)));
    assert_eq!(
        notes("cuda:0,500mb;cuda:1,3.0g;cpu,5gb*"),
        ["`5gb` before `*` is not used: `cpu` takes the rest of the model"]
    );
    assert_eq!(a.to_string(), "cuda:0,500mb;cuda:1,3gb;cpu,*");
    assert!(matches!(kinds("cuda:0,4gb;cpu,5gb*;disk,*")[..], [Kind::MultipleRest { .. }]));
    assert!(matches!(kinds("cuda:0,4gb;cpu,5tbs*")[..], [Kind::UnknownUnit { .. }]));

    // Ratios are normalised by their sum; 100 in all reads as before.
    let a = ok("cuda:0,8%;cuda:1,8%;cpu,4%");
    assert_eq!(a.ratio_sum(), Some(Decimal::from_int(20)));
    assert_eq!(notes("cuda:0,8%;cuda:1,8%;cpu,4%"), ["shares add up to 20%: read as 8:8:4 → 40% / 40% / 20%"]);
    assert_eq!(ok("cuda:0,25%;cpu,75%").ratio_sum(), None);
    assert!(notes("cuda:0,25%;cpu,75%").is_empty());
    assert_eq!(notes("cuda:0,1%;cuda:1,1%;cpu,1%"), ["shares add up to 3%: read as 1:1:1 → 33.33% / 33.33% / 33.33%"]);
    // With `*`, shares stay percents of the model and `*` takes what is left of 100.
    assert_eq!(ok("cuda:0,60%;cpu,*").ratio_sum(), None);

    // A trailing `;` is nothing.
    assert!(ok("cuda:0,2.5gb;cpu,*;").same_meaning(&ok("cuda:0,2.5gb;cpu,*")));
    assert!(ok("cuda:0,2.5gb;cpu,*; ").same_meaning(&ok("cuda:0,2.5gb;cpu,*")));

    // `<expert>#<compute>`: the entries, for that compute device.
    let a = ok("cuda:0,2.5gb;cpu,*#cuda:0");
    assert_eq!(a.mode, Mode::Bytes);
    assert_eq!(a.compute.as_ref().unwrap().value, Device::Cuda(0));
    assert_eq!(bytes_of(&a), vec![("cuda:0".into(), Some(2_684_354_560)), ("cpu".into(), None)]);
    assert_eq!(a.to_string(), "cuda:0,2560mb;cpu,*#cuda:0");
    // DisTorch's nodes append the virtual VRAM too when it is set; the entries decide.
    let a = ok("cuda:0,2.5gb;cpu,*#cuda:0;4.0;cpu");
    assert!(a.virtual_vram.is_none());
    assert_eq!(
        notes("cuda:0,2.5gb;cpu,*#cuda:0;4.0;cpu"),
        ["the virtual vram after the compute device is not used: the entries before `#` decide"]
    );

    // `#<compute>;<GB>;<donors>`: virtual VRAM, donors in order.
    let a = ok("#cuda:0;4.0;cpu");
    assert_eq!(a.mode, Mode::VirtualVram);
    assert!(a.entries.is_empty());
    let v = a.virtual_vram.as_ref().unwrap();
    assert_eq!(v.amount.value, Bytes(4 << 30));
    assert_eq!(v.donors.iter().map(|d| d.value).collect::<Vec<_>>(), [Device::Cpu]);
    assert_eq!(a.to_string(), "#cuda:0;4gb;cpu");
    let a = ok("#cuda:1;8.0;cuda:0,cpu");
    let v = a.virtual_vram.as_ref().unwrap();
    assert_eq!(v.amount.value, Bytes(8 << 30));
    assert_eq!(v.donors.iter().map(|d| d.value).collect::<Vec<_>>(), [Device::Cuda(0), Device::Cpu]);
    assert_eq!(a.devices().map(|d| d.value).collect::<Vec<_>>(), [Device::Cuda(1), Device::Cuda(0), Device::Cpu]);
    assert_eq!(ok("#cuda:0;1.5;cpu").virtual_vram.unwrap().amount.value, Bytes(3 << 29));
    assert_eq!(ok("#cuda:0;512mb;cpu").virtual_vram.unwrap().amount.value, Bytes(512 << 20));

    assert!(matches!(kinds("#cuda:0")[..], [Kind::NothingAroundHash]));
    assert!(matches!(kinds("cuda:0,4gb;cpu,*#")[..], [Kind::MissingCompute]));
    assert!(matches!(kinds("#cuda:0;;cpu")[..], [Kind::MissingVirtualVram]));
    assert!(matches!(kinds("#cuda:0;4.0")[..], [Kind::MissingDonor]));
    assert!(matches!(kinds("#cuda:0;4.0;")[..], [Kind::MissingDonor]));
    assert!(matches!(kinds("#cuda:0;4.0;cuda:0")[..], [Kind::DonorIsCompute { .. }]));
    assert!(matches!(kinds("#cuda:0;4.0;cpu,cpu")[..], [Kind::DuplicateDevice { .. }]));
    assert!(matches!(kinds("#cuda:0;0;cpu")[..], [Kind::NotPositive { .. }]));
    assert!(matches!(kinds("#cuda:0;50%;cpu")[..], [Kind::BadVirtualVram { .. }]));
    assert!(matches!(kinds("#gpu:0;4.0;cpu")[..], [Kind::UnknownDevice { .. }]));
    assert!(matches!(kinds("cuda:0,4gb;cpu,*#cuda:0#cuda:1")[..], [Kind::Stray { .. }]));
}

#[test]
fn canonical_text_parses_back_to_the_same_meaning() {
    for text in [
        "cuda:0,2.5gb;cuda:1,3g;cpu,*",
        "cuda:0,33.3%;cpu,66.7%",
        "cuda:0,0.25;cpu,*",
        "0.8",
        "cpu,1.3g",
        "cuda:0,8%;cuda:1,8%;cpu,4%",
        "cuda:0,500mb;cpu,5gb*",
        "cuda:0,2.5gb;cpu,*#cuda:0",
        "#cuda:1;8.3;cuda:0,cpu",
    ] {
        let a = ok(text);
        let again = ok(&a.to_string());
        assert!(a.same_meaning(&again), "{text} -> {a} -> {again:?}");
    }
}

#[test]
fn sizes_and_bandwidths() {
    assert_eq!(parse_size("24gb").unwrap(), Bytes(24 << 30));
    assert_eq!(parse_size(" 512 MiB ").unwrap(), Bytes(512 << 20));
    assert_eq!(parse_size("0gb").unwrap(), Bytes(0));
    assert!(matches!(parse_size("24").unwrap_err().kind, Kind::MissingUnit { .. }));
    assert!(matches!(parse_size("24 gigs").unwrap_err().kind, Kind::UnknownUnit { .. }));
    assert!(matches!(parse_size("lots").unwrap_err().kind, Kind::BadSize { .. }));
    assert_eq!(parse_bandwidth("27.2GB/s").unwrap().bytes_per_second(), 27_200_000_000);
    assert_eq!(parse_bandwidth("100 Gbit/s").unwrap().bytes_per_second(), 12_500_000_000);
    assert!(matches!(parse_bandwidth("27.2GB").unwrap_err().kind, Kind::UnknownRateUnit { .. }));
    assert!(matches!(parse_bandwidth("fast").unwrap_err().kind, Kind::BadBandwidth { .. }));
}

#[test]
fn decimals_are_exact() {
    let third = Decimal::parse("33.3").unwrap();
    let rest = Decimal::parse("66.70").unwrap();
    assert_eq!(third.checked_add(rest).unwrap(), Decimal::from_int(100));
    assert_eq!(Decimal::parse("0.50").unwrap().to_string(), "0.5");
    assert_eq!(Decimal::parse("007").unwrap().to_string(), "7");
    assert_eq!(Decimal::parse(".").map(|d| d.to_string()), None);
    // Digits past 10^-18 of the unit cannot move a byte: they are dropped, not refused (a
    // slider's float printed in full); an integer part past `u64` is refused.
    assert_eq!(Decimal::parse("1.0000000000000000000001").unwrap(), Decimal::from_int(1));
    assert_eq!(Decimal::parse("3.14159265358979323846").unwrap().to_string(), "3.141592653589793238");
    assert!(Decimal::parse("99999999999999999999").is_none());
    let a = ok("cuda:0,3.3000000000000000000003gb;cpu,*");
    assert_eq!(bytes_of(&a)[0], ("cuda:0".into(), Some(3_543_348_019)));
}

/// Strings made of the language's own characters, in random order: none may panic, and every
/// error must point inside the string, on character boundaries.
#[test]
fn random_strings_never_panic_and_spans_stay_inside() {
    let alphabet: Vec<char> = "cuda:0,1;.*%gbkmtiB -+=pxnhrsk9\té#".chars().collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..50_000 {
        let len = (next() % 24) as usize;
        let text: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        match parse_allocation(&text) {
            Ok(allocation) => {
                let again = parse_allocation(&allocation.to_string()).unwrap();
                assert!(allocation.same_meaning(&again), "{text:?} -> {allocation}");
            }
            Err(errors) => {
                assert!(!errors.is_empty());
                for error in errors {
                    for span in std::iter::once(error.span).chain(error.related_spans().into_iter().map(|(s, _)| s)) {
                        assert!(span.start <= span.end && span.end <= text.len(), "{text:?}: {error:?}");
                        assert!(
                            text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
                            "{text:?}: {error:?}"
                        );
                    }
                }
            }
        }
    }
}
