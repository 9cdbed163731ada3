//! [`SpoolPrinter`]: a printer that writes each job as `NNNNNN.pdf` in a directory, for
//! demos and counters without a printer. Jobs complete at once.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{
    JobHandle, JobPhase, JobState, PrintError, PrintRequest, Printer, PrinterState, PrinterStatus,
    Result,
};

/// Writes jobs as numbered PDF files. Numbers continue after the highest file already
/// in the directory, so a restart never overwrites an earlier job.
#[derive(Debug)]
pub struct SpoolPrinter {
    dir: PathBuf,
    jobs: Mutex<Jobs>,
}

#[derive(Debug, Default)]
struct Jobs {
    last_id: u32,
    /// Jobs of this process; the spool directory's older files are not jobs we know.
    known: HashMap<u32, JobPhase>,
}

impl SpoolPrinter {
    /// Uses (and creates if needed) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| PrintError::Io {
            context: format!("creating spool directory {}", dir.display()),
            source,
        })?;
        let last_id = highest_job_file(&dir)?;
        Ok(Self {
            dir,
            jobs: Mutex::new(Jobs {
                last_id,
                known: HashMap::new(),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a job was written to.
    pub fn job_path(&self, job: &JobHandle) -> PathBuf {
        self.dir.join(format!("{:06}.pdf", job.id()))
    }

    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        // A panic elsewhere while holding the lock leaves only a counter and a map, both
        // consistent at every step: keep going rather than poison the printer forever.
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The highest `NNNNNN.pdf` number in `dir` (0 when none).
fn highest_job_file(dir: &Path) -> Result<u32> {
    let entries = fs::read_dir(dir).map_err(|source| PrintError::Io {
        context: format!("reading spool directory {}", dir.display()),
        source,
    })?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let stem = name.to_str()?.strip_suffix(".pdf")?.to_owned();
            stem.parse::<u32>().ok()
        })
        .max()
        .unwrap_or(0))
}

impl Printer for SpoolPrinter {
    fn submit(&self, job: &PrintRequest) -> Result<JobHandle> {
        let mut jobs = self.jobs();
        let id = jobs.last_id.checked_add(1).ok_or_else(|| PrintError::Io {
            context: "numbering spool jobs".into(),
            source: std::io::Error::other("job numbers exhausted"),
        })?;
        let handle = JobHandle::new(id);
        let path = self.job_path(&handle);
        // Write under a temporary name and link, so a reader of the directory never
        // sees half a document; create_new so another process sharing the directory
        // cannot make us overwrite its file.
        let tmp = self.dir.join(format!(".{id:06}.pdf.part"));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            // One file per job whatever the copies: the file stands for the job.
            f.write_all(job.document())?;
            f.sync_all()?;
            // hard_link (unlike rename) fails when the target exists: no-clobber.
            fs::hard_link(&tmp, &path)?;
            fs::remove_file(&tmp)
        };
        if let Err(source) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(PrintError::Io {
                context: format!("writing {}", path.display()),
                source,
            });
        }
        jobs.last_id = id;
        jobs.known.insert(id, JobPhase::Completed);
        tracing::debug!(job = id, bytes = job.document().len(), "job spooled");
        Ok(handle)
    }

    fn job_status(&self, job: &JobHandle) -> Result<JobState> {
        match self.jobs().known.get(&job.id()) {
            Some(phase) => Ok(JobState::new(*phase)),
            None => Err(PrintError::UnknownJob(job.id())),
        }
    }

    fn status(&self) -> Result<PrinterStatus> {
        if self.dir.is_dir() {
            Ok(PrinterStatus::from_ipp(PrinterState::Idle, []))
        } else {
            // The directory vanished (unmounted USB stick): as good as unplugged.
            Ok(PrinterStatus::Unreachable)
        }
    }

    fn cancel(&self, job: &JobHandle) -> Result<()> {
        match self.jobs().known.get(&job.id()) {
            Some(_) => Err(PrintError::JobFinished(job.id())),
            None => Err(PrintError::UnknownJob(job.id())),
        }
    }
}
