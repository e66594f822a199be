//! After a whole-disk image write: a GPT image smaller than the disk gets its
//! backup header and table moved to the disk's last sectors, as IPA does with
//! `sgdisk -e`, and its protective MBR made to cover the whole disk. Without
//! it the backup sits in the middle of the disk, firmware and `sgdisk -v`
//! report a damaged table, and the space after the image cannot be
//! partitioned (cloud-init's growpart refuses).

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ingot_image_tools::blockdev;

use super::{gpt, is_block_device, mbr};

/// What [`fit_gpt_to_disk`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GptFit {
    /// The backup header's LBA the image's primary header recorded.
    pub backup_lba_before: u64,
    /// The backup header's LBA now: the disk's last sector.
    pub backup_lba: u64,
    /// The last LBA partitions may use now.
    pub last_usable_lba: u64,
    /// Whether the tables were rewritten (false: they already fitted).
    pub moved: bool,
    /// Whether the protective MBR's 0xEE entry was resized to the disk.
    pub protective_mbr_fixed: bool,
    /// Whether the header left at the old backup location was zeroed.
    pub old_backup_cleared: bool,
}

/// Why the partition table could not be fitted to the disk.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Reading or writing the disk failed.
    #[error("{action} on {disk}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// The disk.
        disk: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The image's GPT cannot be made to fit the disk.
    #[error("the GPT written to {disk} does not fit the disk: {reason}")]
    DoesNotFit {
        /// The disk.
        disk: String,
        /// Why.
        reason: String,
    },
}

/// Moves the backup GPT of the image on the whole disk at `path` to the
/// disk's end and resizes its protective MBR entry. `Ok(None)` when the disk
/// has no GPT (a DOS table, or nothing the agent recognises), in which case
/// nothing is written.
pub fn fit_gpt_to_disk(path: &Path) -> Result<Option<GptFit>, FitError> {
    let disk = path.display().to_string();
    let io_err = |action: &'static str| {
        let disk = disk.clone();
        move |source: io::Error| FitError::Io {
            action,
            disk,
            source,
        }
    };
    let (dev, size, sector) = super::open_disk(path).map_err(|(action, e)| io_err(action)(e))?;
    let Some(mut sector0) = mbr::read(&dev).map_err(io_err("read sector 0"))? else {
        return Ok(None);
    };
    if !mbr::is_protective(&sector0) {
        return Ok(None);
    }
    let Some(mut g) = gpt::Gpt::read(&dev, sector, size).map_err(io_err("read the GPT"))? else {
        tracing::warn!(disk = %disk, sector, "protective MBR without a valid primary GPT; the partition table is left as it is");
        return Ok(None);
    };
    let does_not_fit = |reason: String| FitError::DoesNotFit {
        disk: disk.clone(),
        reason,
    };
    let (last_lba, backup_entries_lba, last_usable) = g
        .end_layout(size)
        .ok_or_else(|| does_not_fit(format!("{size} bytes cannot hold both tables")))?;
    let parts = g.partitions();
    if let Some(p) = parts
        .iter()
        .find(|p| p.last_lba > last_usable || p.first_lba > p.last_lba)
    {
        return Err(does_not_fit(format!(
            "partition {} (LBA {}-{}) ends beyond the last usable LBA {last_usable}",
            p.number, p.first_lba, p.last_lba
        )));
    }
    let before = g.backup_lba();
    let in_place = before == last_lba
        && g.last_usable_lba() == last_usable
        && gpt::header_at(&dev, sector, last_lba).map_err(io_err("read the backup GPT"))?;
    let mut old_backup_cleared = false;
    if !in_place {
        g.write(&dev, size).map_err(io_err("write the GPT"))?;
        // The image's own backup header, now in the free space after the
        // image: zeroed, so that nothing finds a second, stale table there.
        // Only where it cannot be anything else: past every partition and
        // the primary array, before the new backup array.
        let partitions_end = parts.iter().map(|p| p.last_lba).max().unwrap_or(0);
        let primary_end = g
            .entries_lba()
            .saturating_add(g.entry_sectors())
            .saturating_sub(1);
        if before != last_lba
            && before > partitions_end.max(primary_end)
            && before < backup_entries_lba
            && gpt::header_at(&dev, sector, before).map_err(io_err("read the old backup GPT"))?
        {
            let zeros = vec![0u8; usize::try_from(sector).unwrap_or(512)];
            let at = before.checked_mul(sector).ok_or_else(|| {
                does_not_fit(format!("old backup LBA {before} is beyond any disk"))
            })?;
            dev.write_all_at(&zeros, at)
                .map_err(io_err("clear the old backup GPT"))?;
            old_backup_cleared = true;
        }
    }
    let protective_mbr_fixed = mbr::fit_protective(&dev, &mut sector0, size / sector)
        .map_err(io_err("write the protective MBR"))?;
    dev.sync_all().map_err(io_err("sync"))?;
    let fit = GptFit {
        backup_lba_before: before,
        backup_lba: last_lba,
        last_usable_lba: last_usable,
        moved: !in_place,
        protective_mbr_fixed,
        old_backup_cleared,
    };
    if fit.moved || fit.protective_mbr_fixed {
        tracing::info!(
            disk = %disk,
            backup_lba_before = before,
            backup_lba = last_lba,
            last_usable_lba = last_usable,
            protective_mbr_fixed,
            "fitted the GPT to the disk (backup table at its end)"
        );
        if is_block_device(&dev) {
            if let Err(e) = blockdev::reread_partitions(&dev) {
                tracing::debug!(disk = %disk, error = %e, "partition table not re-read");
            }
        }
    }
    Ok(Some(fit))
}
