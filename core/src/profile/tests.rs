#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use super::*;

const HAND_WRITTEN: &str = "[[device]]\nname = \"cuda:0\"\nflops_per_second = 1.6e14\n\n[[device]]\nname = \"cpu\"\nflops_per_second = 5e11\nthreads = 8\nruntime_bytes = 25165824\nflops_by_size = [[1024, 4e11], [32, 1e9]]\n\n[[link]]\nfrom = \"cpu\"\nto = \"cuda:0\"\nbytes_per_second = 2.2e10\n\n[disk]\nread_bytes_per_second = 3500000000\n";

fn measured() -> Profile {
    Profile {
        device: vec![ProfileDevice {
            name: Device::Cuda(1),
            flops_per_second: 1.234_5e14,
            seconds_per_tensor: Some(4.5e-6),
            elements_per_second: Some(2.5e10),
            adds_per_second: Some(1.2e11),
            threads: Some(1),
            flops_by_size: vec![(256.0, 1.5e12), (8192.0, 1.1e14)],
            matmul: Some(table()),
            streaming: Some(StreamingFigures {
                threads: 3,
                seconds_per_tensor: 6e-6,
                elements_per_second: 2e10,
                adds_per_second: Some(1e11),
                matmul: MatmulTable { flops_per_second: vec![vec![1e12, 2e12], vec![4e12, 9e12]], ..table() },
            }),
            runtime_bytes: Some(402_653_184),
            gpu_host_bytes: None,
            product_bytes: None,
            norm_workspace: Some(2.5),
            dequantize_workspace: Some(10.0),
            copy_slowdown: Some(1.18),
            spread: Some(0.125),
        }],
        link: vec![ProfileLink {
            from: Device::Cpu,
            to: Device::Cuda(1),
            bytes_per_second: Bandwidth(25_123_456_789),
            spread: Some(0.03),
        }],
        disk: Some(ProfileDisk {
            read_bytes_per_second: Bandwidth(3_200_000_000),
            cold_read_bytes_per_second: Some(Bandwidth(450_000_000)),
            staged_read_bytes_per_second: Some(Bandwidth(9_600_000_000)),
            spread: None,
        }),
    }
}

fn table() -> MatmulTable {
    MatmulTable {
        inner: vec![128.0, 2048.0],
        outputs: vec![4096.0, 16_777_216.0],
        flops_per_second: vec![vec![1e12, 4e12], vec![8e12, 1.6e13]],
    }
}

#[test]
fn a_matmul_table_is_read_between_and_beyond_its_shapes() {
    let t = table();
    let close = |a: f64, b: f64| (a - b).abs() <= b * 1e-9;
    // At its points, the figures measured.
    assert!(close(t.at(128.0, 4096.0).unwrap(), 1e12));
    assert!(close(t.at(2048.0, 16_777_216.0).unwrap(), 1.6e13));
    // Beyond its edges, held at the nearest.
    assert!(close(t.at(16.0, 1.0).unwrap(), 1e12));
    assert!(close(t.at(1e6, 1e12).unwrap(), 1.6e13));
    // Half way on both axes (in logs): the geometric mean of the four corners.
    let middle = t.at((128.0f64 * 2048.0).sqrt(), (4096.0f64 * 16_777_216.0).sqrt()).unwrap();
    assert!(close(middle, (1e12f64 * 4e12 * 8e12 * 1.6e13).powf(0.25)), "{middle}");
    // Monotone in each axis where the corners are.
    assert!(t.at(512.0, 65536.0).unwrap() < t.at(1024.0, 65536.0).unwrap());
}

#[test]
fn streaming_figures_are_read_when_a_model_streams() {
    let p = measured();
    let cuda = Device::Cuda(1);
    assert_eq!(p.matmul(cuda, false).unwrap().flops_per_second[0][0], 1e12);
    assert_eq!(p.matmul(cuda, true).unwrap().flops_per_second[1][1], 9e12);
    assert_eq!(p.streaming(cuda).unwrap().threads, 3);
    assert!(p.matmul(Device::Cpu, false).is_none(), "a device the profile does not have");
}

#[test]
fn a_hand_written_profile_is_read_with_typed_figures() {
    let profile = Profile::from_toml(HAND_WRITTEN).unwrap();
    assert_eq!(profile.flops(Device::Cuda(0)), Some(1.6e14));
    assert_eq!(profile.flops(Device::Cuda(1)), None);
    assert_eq!(profile.threads(Device::Cpu), Some(8));
    assert_eq!(profile.runtime_bytes(Device::Cpu), Some(25_165_824));
    assert_eq!(profile.runtime_bytes(Device::Cuda(0)), None, "not measured: the compiler's default");
    assert_eq!(profile.flops_by_size(Device::Cpu), [(32.0, 1e9), (1024.0, 4e11)], "sizes ascending");
    assert_eq!(profile.link[0].bytes_per_second, Bandwidth(22_000_000_000));
    assert_eq!(profile.rate(Device::Cuda(0), Device::Cpu), Some(2.2e10), "either direction");
    assert_eq!(profile.disk_read(), Some(3.5e9));
    assert_eq!(profile.disk_read_cold(), None, "an older profile measured the disk warm only");
}

#[test]
fn a_size_curve_never_falls_as_the_size_grows() {
    // 1024 measured slower than 512 (one noisy run): the two are pooled into their mean.
    let curve = [(256.0, 1.0e11), (512.0, 3.0e11), (1024.0, 2.0e11), (2048.0, 4.0e11)];
    assert_eq!(monotone(&curve), [(256.0, 1.0e11), (512.0, 2.5e11), (1024.0, 2.5e11), (2048.0, 4.0e11)]);
    // A fall across several points pools them all.
    let falling = [(1.0, 6.0), (2.0, 3.0), (3.0, 0.0)];
    assert_eq!(monotone(&falling), [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]);
    // A rising curve is left as it is, and so is an empty one.
    assert_eq!(monotone(&[(1.0, 1.0), (2.0, 2.0)]), [(1.0, 1.0), (2.0, 2.0)]);
    assert!(monotone(&[]).is_empty());
    // The profile's curve is read monotone, whoever wrote it.
    let text = "[[device]]\nname = \"cpu\"\nflops_per_second = 1e11\nflops_by_size = [[1024, 2e11], [512, 3e11]]\n";
    let read = Profile::from_toml(text).unwrap().flops_by_size(Device::Cpu);
    assert_eq!(read, [(512.0, 2.5e11), (1024.0, 2.5e11)]);
}

#[test]
fn a_written_profile_reads_back_the_same() {
    let profile = measured();
    let text = profile.to_toml().unwrap();
    assert_eq!(Profile::from_toml(&text).unwrap(), profile, "{text}");
    assert!(text.contains("name = \"cuda:1\"") && text.contains("bytes_per_second = 25123456789"), "{text}");
    assert_eq!(Profile::default().to_toml().unwrap(), "");
}

#[test]
fn bad_profiles_say_what_is_wrong() {
    let cases = [
        ("[[device]]\nname = \"gpu:0\"\nflops_per_second = 1e14\n", "`gpu:0` is not a device"),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 0\n",
            "`flops_per_second` of `cpu` must be a positive number, not 0",
        ),
        ("[[device]]\nname = \"cpu\"\nflops_per_second = 1\nflops = 2\n", "unknown field `flops`"),
        (
            "[[link]]\nfrom = \"cpu\"\nto = \"cuda:0\"\nbytes_per_second = -1e9\n",
            "a bandwidth must be a positive number, not -1000000000",
        ),
        (
            "[[link]]\nfrom = \"cpu\"\nto = \"cuda:0\"\nbytes_per_second = 0\n",
            "`bytes_per_second` of `cpu` -> `cuda:0` must be a positive number, not 0",
        ),
        ("[disk]\nread_bytes_per_second = \"fast\"\n", "a number of bytes a second"),
        ("[disk]\nread_bytes_per_second = nan\n", "a bandwidth must be a positive number, not NaN"),
        (
            "[disk]\nread_bytes_per_second = 1e9\ncold_read_bytes_per_second = 0\n",
            "`cold_read_bytes_per_second` of `disk` must be a positive number, not 0",
        ),
        (
            "[disk]\nread_bytes_per_second = 1e9\nstaged_read_bytes_per_second = 0\n",
            "`staged_read_bytes_per_second` of `disk` must be a positive number, not 0",
        ),
        ("[disk]\nread_bytes_per_second = 1e9\nspread = -0.5\n", "a `spread` must be 0 or more, not -0.5"),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 1\nflops_by_size = [[0, 1]]\n",
            "a size in `flops_by_size` of `cpu`",
        ),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 1\n[device.matmul]\ninner = [64, 32]\noutputs = [1]\nflops_per_second = [[1], [2]]\n",
            "`matmul` of `cpu` must have ascending `inner`",
        ),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 1\n[device.matmul]\ninner = [32]\noutputs = [1, 2]\nflops_per_second = [[1]]\n",
            "one figure per output size",
        ),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 1\n[device.matmul]\ninner = [32]\noutputs = [1]\nflops_per_second = [[-1]]\n",
            "every figure in `matmul` of `cpu` must be a positive number, not -1",
        ),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 1\n[device.streaming]\nthreads = 1\nseconds_per_tensor = 0\nelements_per_second = 1\n[device.streaming.matmul]\ninner = [32]\noutputs = [1]\nflops_per_second = [[1]]\n",
            "`streaming.seconds_per_tensor` of `cpu` must be a positive number, not 0",
        ),
        (
            "[[device]]\nname = \"cuda:0\"\nflops_per_second = 1\ncopy_slowdown = 0.8\n",
            "`copy_slowdown` of `cuda:0` must be 1 or more (a factor of slowing down), not 0.8",
        ),
        (
            "[[device]]\nname = \"cuda:0\"\nflops_per_second = 1\ncopy_slowdown = inf\n",
            "`copy_slowdown` of `cuda:0` must be 1 or more",
        ),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 1\nnorm_workspace = -2\n",
            "`norm_workspace` of `cpu` must be 0 or more, not -2",
        ),
        (
            "[[device]]\nname = \"cpu\"\nflops_per_second = 1\ndequantize_workspace = nan\n",
            "`dequantize_workspace` of `cpu` must be 0 or more, not NaN",
        ),
    ];
    for (text, expected) in cases {
        let error = Profile::from_toml(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: expected `{expected}` in `{error}`");
    }
}
