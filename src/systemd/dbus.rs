//! systemd over the system D-Bus (`org.freedesktop.systemd1`): the few Manager, Unit and
//! Service members kubejoin needs, and starting a unit with a known outcome.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedObjectPath};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_unit_file_state(&self, file: &str) -> zbus::Result<String>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    fn mask_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    fn unmask_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_enter_timestamp(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property, name = "InvocationID")]
    fn invocation_id(&self) -> zbus::Result<Vec<u8>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait Service {
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn exec_main_status(&self) -> zbus::Result<i32>;
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
    /// `a(sasbttttuii)`: path, argv, ignore-failure, then timestamps and status.
    #[zbus(property)]
    #[allow(clippy::type_complexity)]
    fn exec_start(
        &self,
    ) -> zbus::Result<Vec<(String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32)>>;
    #[zbus(property)]
    fn environment_files(&self) -> zbus::Result<Vec<(String, bool)>>;
}

/// What systemd says of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnitStatus {
    pub active_state: String,
    pub sub_state: String,
    /// Microseconds since the epoch; 0 if never active.
    pub active_enter_timestamp: u64,
    /// A service's `Result` (`success`, `exit-code`, ...), when the unit is a service.
    pub result: Option<String>,
    pub exec_main_status: Option<i32>,
    /// How often systemd restarted it (`Restart=`) since it was last started by a job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_restarts: Option<u32>,
    /// This run's invocation ID (hex), which tags its journal entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
}

impl UnitStatus {
    pub fn is_active(&self) -> bool {
        self.active_state == "active"
    }

    /// Failed, or waiting to be restarted after a failure.
    pub fn is_failing(&self) -> bool {
        self.active_state == "failed"
            || (self.active_state == "activating" && self.sub_state == "auto-restart")
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} ({})", self.active_state, self.sub_state);
        if let Some(r) = &self.result {
            s.push_str(&format!(", result {r}"));
        }
        if let Some(code) = self.exec_main_status.filter(|c| *c != 0) {
            s.push_str(&format!(", exit status {code}"));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot talk to systemd over the system D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("systemd's job to {verb} {unit} ended with result {result:?}; unit is {}", status.describe())]
    Job {
        verb: &'static str,
        unit: String,
        result: String,
        status: UnitStatus,
    },
    #[error("{unit} did not stay active: it is {}", status.describe())]
    NotActive { unit: String, status: UnitStatus },
    #[error("{unit} did not become active within {}s; it is {}", after.as_secs(), status.describe())]
    Timeout {
        unit: String,
        after: Duration,
        status: UnitStatus,
    },
}

impl SystemdError {
    pub fn fix(&self) -> String {
        match self {
            SystemdError::Bus(_) => {
                "kubejoin needs systemd as PID 1 and the system bus (dbus.service) running; \
                 check `systemctl status dbus`"
                    .into()
            }
            SystemdError::Job { unit, .. }
            | SystemdError::NotActive { unit, .. }
            | SystemdError::Timeout { unit, .. } => {
                format!("see why with `journalctl -u {unit}` and `systemctl status {unit}`")
            }
        }
    }
}

/// A connection to systemd.
pub struct Systemd {
    conn: Connection,
    manager: ManagerProxy<'static>,
    /// `Subscribe` is once per connection; systemd refuses a second one.
    subscribed: std::sync::atomic::AtomicBool,
}

impl Systemd {
    pub async fn connect() -> Result<Systemd, SystemdError> {
        let conn = Connection::system().await?;
        let manager = ManagerProxy::new(&conn).await?;
        Ok(Systemd {
            conn,
            manager,
            subscribed: false.into(),
        })
    }

    /// `daemon-reload`.
    pub async fn reload(&self) -> Result<(), SystemdError> {
        Ok(self.manager.reload().await?)
    }

    /// `KillUnit(unit, "main", signal)`: a signal to the unit's main process.
    pub async fn signal(&self, unit: &str, signal: i32) -> Result<(), SystemdError> {
        Ok(self.manager.kill_unit(unit, "main", signal).await?)
    }

    /// A unit file's state (`enabled`, `masked`, ...); `None` when there is no unit file.
    pub async fn unit_file_state(&self, unit: &str) -> Result<Option<String>, SystemdError> {
        match self.manager.get_unit_file_state(unit).await {
            Ok(state) => Ok(Some(state)),
            Err(zbus::Error::FDO(e)) if matches!(*e, zbus::fdo::Error::FileNotFound(_)) => Ok(None),
            Err(zbus::Error::MethodError(name, ..))
                if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a unit file is enabled.
    pub async fn is_enabled(&self, unit: &str) -> Result<bool, SystemdError> {
        Ok(self.unit_file_state(unit).await?.as_deref() == Some("enabled"))
    }

    /// Enables unit files; true when anything changed.
    pub async fn enable(&self, unit: &str) -> Result<bool, SystemdError> {
        if self.is_enabled(unit).await? {
            return Ok(false);
        }
        let (_, changes) = self
            .manager
            .enable_unit_files(&[unit], false, false)
            .await?;
        Ok(!changes.is_empty())
    }

    /// Masks unit files; true when anything changed.
    pub async fn mask(&self, unit: &str) -> Result<bool, SystemdError> {
        let changes = self.manager.mask_unit_files(&[unit], false, true).await?;
        Ok(!changes.is_empty())
    }

    /// Unmasks unit files; true when anything changed.
    pub async fn unmask(&self, unit: &str) -> Result<bool, SystemdError> {
        let changes = self.manager.unmask_unit_files(&[unit], false).await?;
        Ok(!changes.is_empty())
    }

    /// Disables unit files; true when anything changed.
    pub async fn disable(&self, unit: &str) -> Result<bool, SystemdError> {
        let changes = self.manager.disable_unit_files(&[unit], false).await?;
        Ok(!changes.is_empty())
    }

    /// Stops a unit with mode `replace` and waits for the job's result.
    pub async fn stop(&self, unit: &str, timeout: Duration) -> Result<(), SystemdError> {
        let mut removed = self.manager.receive_job_removed().await?;
        if !self
            .subscribed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.manager.subscribe().await?;
        }
        let job = self.manager.stop_unit(unit, "replace").await?;
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(signal)) = tokio::time::timeout(remaining, removed.next()).await else {
                return Err(SystemdError::Timeout {
                    unit: unit.into(),
                    after: timeout,
                    status: self.status(unit).await?,
                });
            };
            let args = signal.args()?;
            if args.job == job {
                return match args.result.as_str() {
                    "done" => Ok(()),
                    other => Err(SystemdError::Job {
                        verb: "stop",
                        unit: unit.into(),
                        result: other.into(),
                        status: self.status(unit).await?,
                    }),
                };
            }
        }
    }

    /// The Unit and Service interfaces of a unit, loading it if systemd has not yet.
    /// Properties are read fresh each time: they change while a job runs.
    async fn proxies(
        &self,
        unit: &str,
    ) -> Result<(UnitProxy<'static>, ServiceProxy<'static>), SystemdError> {
        let path = self.manager.load_unit(unit).await?;
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let s = ServiceProxy::builder(&self.conn)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok((u, s))
    }

    /// The state of a unit (loading it if systemd has not yet).
    pub async fn status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        let (u, s) = self.proxies(unit).await?;
        let (result, exec_main_status, n_restarts) = if unit.ends_with(".service") {
            (
                s.result().await.ok(),
                s.exec_main_status().await.ok(),
                s.n_restarts().await.ok(),
            )
        } else {
            (None, None, None)
        };
        let invocation_id = u
            .invocation_id()
            .await
            .ok()
            .filter(|id| id.iter().any(|b| *b != 0))
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        Ok(UnitStatus {
            active_state: u.active_state().await?,
            sub_state: u.sub_state().await?,
            active_enter_timestamp: u.active_enter_timestamp().await?,
            result,
            exec_main_status,
            n_restarts,
            invocation_id,
        })
    }

    /// A service's `ExecStart=` words (unexpanded) and its `EnvironmentFile=`s, or `None`
    /// when it has no unit file.
    pub async fn exec_start(
        &self,
        unit: &str,
    ) -> Result<Option<(Vec<String>, Vec<std::path::PathBuf>)>, SystemdError> {
        let (u, s) = self.proxies(unit).await?;
        if u.load_state().await? != "loaded" {
            return Ok(None);
        }
        let argv = s
            .exec_start()
            .await?
            .into_iter()
            .next()
            .map(|e| e.1)
            .unwrap_or_default();
        let files = s
            .environment_files()
            .await?
            .into_iter()
            .map(|(p, _)| std::path::PathBuf::from(p))
            .collect();
        Ok(Some((argv, files)))
    }

    /// Starts (or restarts) a unit with mode `replace`, waits for its job to finish, then
    /// until the unit is active (a unit that exits at once fails here). The whole wait is
    /// bounded by `timeout`. Whether kubelet then does its job is the join's to watch.
    pub async fn start(
        &self,
        unit: &str,
        restart: bool,
        timeout: Duration,
    ) -> Result<UnitStatus, SystemdError> {
        let deadline = Instant::now() + timeout;
        let verb = if restart { "restart" } else { "start" };
        // Subscribe before queuing the job, so its JobRemoved cannot be missed.
        let mut removed = self.manager.receive_job_removed().await?;
        if !self
            .subscribed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.manager.subscribe().await?;
        }
        let job = if restart {
            self.manager.restart_unit(unit, "replace").await?
        } else {
            self.manager.start_unit(unit, "replace").await?
        };
        tracing::info!(phase = "kubelet", unit, job = %job.as_str(), "{verb} job for {unit} queued");
        let result = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(next) = tokio::time::timeout(remaining, removed.next()).await else {
                return Err(SystemdError::Timeout {
                    unit: unit.into(),
                    after: timeout,
                    status: self.status(unit).await?,
                });
            };
            let Some(signal) = next else {
                return Err(zbus::Error::Failure("the JobRemoved stream ended".into()).into());
            };
            let args = signal.args()?;
            if args.job == job {
                break args.result.clone();
            }
        };
        tracing::info!(phase = "kubelet", unit, result = %result, "{verb} job for {unit}: {result}");
        if result != "done" {
            return Err(SystemdError::Job {
                verb,
                unit: unit.into(),
                result,
                status: self.status(unit).await?,
            });
        }
        // The job is done when the process started; make sure it is running.
        loop {
            let status = self.status(unit).await?;
            if status.is_failing() {
                return Err(SystemdError::NotActive {
                    unit: unit.into(),
                    status,
                });
            }
            if status.is_active() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(SystemdError::Timeout {
                    unit: unit.into(),
                    after: timeout,
                    status,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(active: &str, sub: &str) -> UnitStatus {
        UnitStatus {
            active_state: active.into(),
            sub_state: sub.into(),
            active_enter_timestamp: 0,
            result: Some("exit-code".into()),
            exec_main_status: Some(1),
            n_restarts: None,
            invocation_id: None,
        }
    }

    #[test]
    fn failing_states() {
        assert!(status("failed", "failed").is_failing());
        assert!(status("activating", "auto-restart").is_failing());
        assert!(!status("activating", "start").is_failing());
        assert!(!status("active", "running").is_failing());
        assert_eq!(
            status("activating", "auto-restart").describe(),
            "activating (auto-restart), result exit-code, exit status 1"
        );
    }
}
