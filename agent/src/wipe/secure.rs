//! Secure mode: probe what the device can do, then try the strongest method
//! first, verifying each before accepting it:
//!
//! 1. NVMe Sanitize crypto erase, 2. NVMe Sanitize block erase,
//! 3. NVMe Format NVM SES 2 (crypto), 4. NVMe Format NVM SES 1 (user data),
//! 5. ATA SECURITY ERASE UNIT enhanced, 6. ATA SECURITY ERASE UNIT normal,
//! 7. `BLKSECDISCARD`, 8. `BLKDISCARD` + `BLKZEROOUT` + zeros verified,
//! 9. overwrite (only when allowed).
//!
//! Every method not used gets a reason in the report. A method that fails,
//! or whose verification finds the pattern still there, is recorded and the
//! next one is tried.

use std::time::Duration;

use ingot_image_tools::blockdev;
use ingot_proto::wipe::{DeviceKind, SkippedMethod, Verification, VerifyMode, WipeMethod};

use super::device::{Device, queue_attr};
use super::overwrite;
use super::verify::Samples;
use super::{WipeError, WipeOptions, ata, nvme};

/// The result of secure mode on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct SecureOutcome {
    /// The method that erased the device, if any did.
    pub method: Option<WipeMethod>,
    /// Random passes (overwrite only).
    pub passes: Option<u32>,
    /// Seconds of each overwrite pass, the zero pass last.
    pub pass_seconds: Vec<f64>,
    /// Bytes covered by the method.
    pub bytes: u64,
    /// Methods not used and why (including failed attempts).
    pub skipped: Vec<SkippedMethod>,
    /// Verification of the accepted method (or of the last failed attempt).
    pub verification: Option<Verification>,
    /// Why no method succeeded.
    pub failure: Option<String>,
}

/// What the capability probe found out about NVMe.
#[derive(Debug, Clone)]
struct NvmeCaps {
    nsid: u32,
    ctrl: nvme::IdController,
    ns: nvme::IdNamespace,
    namespaces: usize,
}

/// One planned method: how to run it, or why not.
#[derive(Debug, Clone)]
enum Step {
    Sanitize(nvme::SanitizeAction),
    Format {
        nsid: u32,
        ses: nvme::SecureErase,
        ns: nvme::IdNamespace,
    },
    Ata {
        enhanced: bool,
    },
    SecureDiscard,
    DiscardZeroOut,
    Overwrite,
}

/// The ordered plan: each method with its step, or the reason it is skipped.
fn plan(dev: &mut Device, opts: &WipeOptions) -> Vec<(WipeMethod, Result<Step, String>)> {
    let mut out = Vec::new();
    let whole_device_reason = match dev.kind() {
        DeviceKind::Partition => {
            Some("a partition: device-wide erase commands would erase the whole disk".to_string())
        }
        DeviceKind::File => Some("a regular file".to_string()),
        _ => None,
    };

    // NVMe.
    let caps = match &whole_device_reason {
        Some(r) => Err(r.clone()),
        None => probe_nvme(dev),
    };
    if let Ok(c) = &caps {
        dev.set_kind(DeviceKind::Nvme);
        dev.set_identity(Some(c.ctrl.model.clone()), Some(c.ctrl.serial.clone()));
    }
    let single = |c: &NvmeCaps| {
        if c.namespaces <= 1 {
            Ok(())
        } else {
            Err(format!(
                "the controller has {} namespaces and this erases all of them; name a single-namespace drive",
                c.namespaces
            ))
        }
    };
    for (method, action, supported) in [
        (
            WipeMethod::NvmeSanitizeCrypto,
            nvme::SanitizeAction::CryptoErase,
            nvme::IdController::sanitize_crypto as fn(&nvme::IdController) -> bool,
        ),
        (
            WipeMethod::NvmeSanitizeBlock,
            nvme::SanitizeAction::BlockErase,
            nvme::IdController::sanitize_block,
        ),
    ] {
        let step = caps.clone().and_then(|c| {
            if !supported(&c.ctrl) {
                return Err(format!("not supported (SANICAP {:#x})", c.ctrl.sanicap));
            }
            single(&c)?;
            Ok(Step::Sanitize(action))
        });
        out.push((method, step));
    }
    for (method, ses) in [
        (WipeMethod::NvmeFormatCrypto, nvme::SecureErase::Crypto),
        (WipeMethod::NvmeFormatUserData, nvme::SecureErase::UserData),
    ] {
        let step = caps.clone().and_then(|c| {
            if !c.ctrl.format_supported() {
                return Err(format!(
                    "Format NVM not supported (OACS {:#x})",
                    c.ctrl.oacs
                ));
            }
            if ses == nvme::SecureErase::Crypto && !c.ctrl.format_crypto() {
                return Err(format!(
                    "crypto erase not supported as part of a format (FNA {:#x})",
                    c.ctrl.fna
                ));
            }
            let all = c.ctrl.format_all_namespaces() || c.ctrl.erase_all_namespaces();
            if all {
                single(&c)?;
            }
            let nsid = if all { nvme::NSID_ALL } else { c.nsid };
            Ok(Step::Format {
                nsid,
                ses,
                ns: c.ns,
            })
        });
        out.push((method, step));
    }

    // ATA.
    let ata_caps = match (&whole_device_reason, &caps) {
        (Some(r), _) => Err(r.clone()),
        (None, Ok(_)) => Err("an NVMe device".to_string()),
        (None, Err(_)) => probe_ata(dev),
    };
    for (method, enhanced) in [
        (WipeMethod::AtaSecurityEraseEnhanced, true),
        (WipeMethod::AtaSecurityErase, false),
    ] {
        let step = ata_caps.clone().and_then(|id| {
            if !id.supported() {
                return Err(format!(
                    "security feature set not supported ({})",
                    id.describe()
                ));
            }
            if id.frozen() {
                return Err(format!(
                    "FROZEN: the drive refuses security commands until it is power-cycled; \
                     suspend/resume the host or hot-plug the drive, then retry ({})",
                    id.describe()
                ));
            }
            if id.enabled() || id.locked() || id.count_expired() {
                return Err(format!(
                    "a password is already set or locked ({})",
                    id.describe()
                ));
            }
            if enhanced && !id.enhanced_supported() {
                return Err("enhanced erase not supported".to_string());
            }
            Ok(Step::Ata { enhanced })
        });
        out.push((method, step));
    }

    // Block layer.
    let queue = dev.sysfs().map(|s| {
        if s.join("partition").exists() {
            s.join("..")
        } else {
            s.to_path_buf()
        }
    });
    let discard_max = queue
        .as_deref()
        .and_then(|q| queue_attr(q, "discard_max_bytes"));
    let zeroes_max = queue
        .as_deref()
        .and_then(|q| queue_attr(q, "write_zeroes_max_bytes"));
    if dev.is_file() {
        out.push((
            WipeMethod::SecureDiscard,
            Err("a regular file has no secure discard".into()),
        ));
        out.push((
            WipeMethod::DiscardZeroOut,
            Err("a regular file: punching holes frees its blocks to the host filesystem without erasing them".into()),
        ));
    } else {
        out.push((WipeMethod::SecureDiscard, Ok(Step::SecureDiscard)));
        let step = match (discard_max, zeroes_max) {
            (Some(0) | None, _) => Err("the device does not support discard".to_string()),
            (_, Some(0) | None) => Err(
                "no Write Zeroes offload: zeroing would be a full overwrite (see --allow-overwrite-fallback)".to_string(),
            ),
            _ => Ok(Step::DiscardZeroOut),
        };
        out.push((WipeMethod::DiscardZeroOut, step));
    }
    let step = if opts.allow_overwrite {
        Ok(Step::Overwrite)
    } else {
        Err("not allowed (pass --allow-overwrite-fallback)".to_string())
    };
    out.push((WipeMethod::Overwrite, step));
    if let Some(only) = opts.only {
        for (method, step) in &mut out {
            if *method != only && step.is_ok() {
                *step = Err(format!("not selected (--method {})", method_name(only)));
            }
        }
    }
    out
}

/// The method's name as the CLI and the report spell it (`discard_zero_out`).
pub fn method_name(m: WipeMethod) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{m:?}"))
}

fn probe_nvme(dev: &Device) -> Result<NvmeCaps, String> {
    let Some(nsid) = nvme::namespace_id(dev.file()) else {
        return Err("not an NVMe device".into());
    };
    let ctrl = nvme::identify_controller(dev.file()).map_err(|e| {
        format!(
            "Identify Controller failed: {}",
            super::report::error_chain(&e)
        )
    })?;
    let ns = nvme::identify_namespace(dev.file(), nsid).map_err(|e| {
        format!(
            "Identify Namespace failed: {}",
            super::report::error_chain(&e)
        )
    })?;
    let namespaces = match nvme::active_namespaces(dev.file()) {
        Ok(list) => list.len(),
        Err(_) => ctrl.nn as usize,
    };
    tracing::info!(
        device = %dev.path().display(),
        nsid,
        model = %ctrl.model,
        oacs = ctrl.oacs,
        fna = ctrl.fna,
        sanicap = ctrl.sanicap,
        namespaces,
        "NVMe capabilities"
    );
    Ok(NvmeCaps {
        nsid,
        ctrl,
        ns,
        namespaces,
    })
}

fn probe_ata(dev: &mut Device) -> Result<ata::Identify, String> {
    match ata::identify(dev.file()) {
        Ok(id) => {
            dev.set_kind(DeviceKind::Ata);
            dev.set_identity(Some(id.model.clone()), Some(id.serial.clone()));
            tracing::info!(device = %dev.path().display(), model = %id.model, security = %id.describe(), "ATA capabilities");
            Ok(id)
        }
        Err(e) => Err(format!(
            "not an ATA device (IDENTIFY DEVICE: {})",
            super::report::error_chain(&e)
        )),
    }
}

/// What a step did: whether the method guarantees zeros, and pass timings.
#[derive(Debug, Default)]
struct Ran {
    expect_zero: bool,
    pass_seconds: Vec<f64>,
}

/// Runs one step.
fn run(dev: &mut Device, step: &Step, opts: &WipeOptions, seed: u64) -> Result<Ran, WipeError> {
    let size = dev.size();
    match step {
        Step::Sanitize(action) => {
            nvme::sanitize(dev.file(), *action, Duration::from_secs(48 * 3600))?;
            Ok(Ran::default())
        }
        Step::Format { nsid, ses, ns } => {
            nvme::format(dev.file(), *nsid, ns, *ses)?;
            Ok(Ran::default())
        }
        Step::Ata { enhanced } => {
            let before = ata::identify(dev.file())?;
            let res = ata::security_erase(dev.file(), &before, *enhanced);
            // Never trust the exit status alone: read the state back.
            let after = ata::identify(dev.file())?;
            if after.enabled() || after.locked() {
                ata::disable_password(dev.file()).ok();
                return Err(WipeError::Method(format!(
                    "security still enabled after the erase ({}){}",
                    after.describe(),
                    res.err()
                        .map(|e| format!("; erase: {e}"))
                        .unwrap_or_default()
                )));
            }
            res?;
            Ok(Ran::default())
        }
        Step::SecureDiscard => {
            blockdev::secure_discard(dev.file(), 0, size - size % 512)
                .map_err(WipeError::Unsupported)?;
            Ok(Ran::default())
        }
        Step::DiscardZeroOut => {
            let len = size - size % 512;
            blockdev::discard(dev.file(), 0, len).map_err(WipeError::Unsupported)?;
            blockdev::zero_out(dev.file(), 0, len).map_err(WipeError::read("BLKZEROOUT"))?;
            dev.sync().map_err(WipeError::target("fsync"))?;
            Ok(Ran {
                expect_zero: true,
                pass_seconds: Vec::new(),
            })
        }
        Step::Overwrite => {
            let stats = overwrite::overwrite(dev, opts.passes, seed, opts.progress.as_ref())?;
            tracing::info!(
                device = %dev.path().display(),
                passes = opts.passes,
                bytes = stats.bytes,
                random_mb_per_s = if stats.random_seconds > 0.0 { size as f64 * f64::from(opts.passes) / stats.random_seconds / 1e6 } else { 0.0 },
                zero_mb_per_s = size as f64 / stats.zero_seconds.max(1e-9) / 1e6,
                "overwrite done"
            );
            Ok(Ran {
                expect_zero: true,
                pass_seconds: stats.pass_seconds,
            })
        }
    }
}

/// Checks the samples (and with `full` the whole device).
fn check(
    dev: &Device,
    samples: &Samples,
    mode: VerifyMode,
    expect_zero: bool,
) -> Result<Verification, WipeError> {
    let r = samples.check(dev, expect_zero)?;
    let mut v = Verification {
        mode,
        passed: false,
        samples: samples.locations.len() as u32,
        samples_survived: r.samples_survived,
        expect_zero,
        bytes_read: r.bytes_read,
        nonzero_bytes: r.nonzero_bytes,
        signatures_left: Vec::new(),
        detail: None,
    };
    let mut survived = r.sectors_survived;
    if mode == VerifyMode::Full {
        let f = samples.scan(dev, expect_zero)?;
        v.bytes_read += f.bytes_read;
        v.nonzero_bytes = f.nonzero_bytes.max(r.nonzero_bytes);
        survived = survived.max(f.sectors_survived);
    }
    let mut problems = Vec::new();
    if v.samples_survived > 0 || survived > 0 {
        problems.push(format!(
            "pattern survived in {} of {} samples ({survived} sectors)",
            v.samples_survived, v.samples
        ));
    }
    if expect_zero && v.nonzero_bytes > 0 {
        problems.push(format!(
            "{} non-zero bytes where zeros were expected",
            v.nonzero_bytes
        ));
    }
    v.passed = problems.is_empty();
    v.detail = (!v.passed).then(|| problems.join("; "));
    Ok(v)
}

/// Stops at an I/O error of the device itself (EIO, ENOSPC): no other method
/// is tried, and the error is the device's failure.
fn io_failure(mut out: SecureOutcome, method: WipeMethod, e: &WipeError) -> SecureOutcome {
    let msg = super::report::error_chain(e);
    tracing::error!(?method, error = %msg, "I/O error");
    out.skipped.push(SkippedMethod {
        method,
        reason: format!("I/O error: {msg}"),
    });
    out.failure = Some(format!("{method:?}: {msg}"));
    out
}

/// Runs secure mode on an open device.
pub fn wipe_secure(
    dev: &mut Device,
    opts: &WipeOptions,
    run_id: u64,
) -> Result<SecureOutcome, WipeError> {
    let steps = plan(dev, opts);
    let mut out = SecureOutcome {
        method: None,
        passes: None,
        pass_seconds: Vec::new(),
        bytes: 0,
        skipped: Vec::new(),
        verification: None,
        failure: None,
    };
    let samples = Samples::plan(dev.size(), dev.block_size(), run_id);
    for (method, step) in steps {
        let step = match step {
            Ok(s) => s,
            Err(reason) => {
                tracing::debug!(device = %dev.path().display(), ?method, %reason, "method skipped");
                out.skipped.push(SkippedMethod { method, reason });
                continue;
            }
        };
        if opts.verify != VerifyMode::None {
            if let Err(e) = samples.write(dev) {
                return Ok(io_failure(out, method, &e.into()));
            }
        }
        tracing::info!(device = %dev.path().display(), ?method, "erasing");
        let ran = match run(dev, &step, opts, run_id) {
            Ok(r) => r,
            Err(WipeError::Unsupported(e)) => {
                out.skipped.push(SkippedMethod {
                    method,
                    reason: format!("not supported by the device: {e}"),
                });
                continue;
            }
            Err(e) if e.is_io_failure() => return Ok(io_failure(out, method, &e)),
            Err(e) => {
                let reason = format!("failed: {}", super::report::error_chain(&e));
                tracing::warn!(device = %dev.path().display(), ?method, %reason, "method failed; trying the next");
                out.skipped.push(SkippedMethod { method, reason });
                continue;
            }
        };
        out.bytes = dev.size();
        if method == WipeMethod::Overwrite {
            out.passes = Some(opts.passes);
            out.pass_seconds = ran.pass_seconds.clone();
            out.bytes = dev.size() * (u64::from(opts.passes) + 1);
        }
        if opts.verify == VerifyMode::None {
            out.method = Some(method);
            return Ok(out);
        }
        let v = match check(dev, &samples, opts.verify, ran.expect_zero) {
            Ok(v) => v,
            Err(e) => return Ok(io_failure(out, method, &e)),
        };
        if v.passed {
            out.method = Some(method);
            out.verification = Some(v);
            return Ok(out);
        }
        let reason = format!(
            "verification failed: {}",
            v.detail.clone().unwrap_or_default()
        );
        tracing::warn!(device = %dev.path().display(), ?method, %reason, "erase did not take effect; trying the next method");
        out.skipped.push(SkippedMethod { method, reason });
        out.verification = Some(v);
    }
    out.failure = Some(if out.verification.is_some() {
        "no method's erase passed verification".to_string()
    } else {
        "no erase method available for this device".to_string()
    });
    Ok(out)
}
