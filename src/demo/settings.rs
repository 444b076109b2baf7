//! `earlykill demo`'s own settings, declared with the configuration's
//! `layer!` (the traffic's knobs are [`TrafficSettings`]), and what they
//! resolve to.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::DemoConfig;
use crate::config::layer::layer;
use crate::config::tools::{speedup, with_traffic, TrafficSettings};
use crate::config::{invalid, listen_address, log_filter, ConfigError};

layer! {
    /// `earlykill demo`'s own settings (the traffic's are in
    /// [`TrafficSettings`]).
    pub struct DemoSettings => DemoValues {
        /// Stop after this many seconds (without it, run until Ctrl-C).
        #[arg(long)]
        duration: u64,
        /// Seconds of event time per wall-clock second: at 10, a variant's
        /// 10-minute window passes in a minute.
        #[arg(long)]
        speedup: f64 = 10.0,
        /// Partitions of the input topics, 1 to 64.
        #[arg(long)]
        partitions: i32 = 4,
        /// Where the HTTP API listens, `host:port`, or `off`.
        #[arg(long)]
        http_listen: String = "127.0.0.1:8080".to_owned(),
        /// Also run the projector into this PostgreSQL database.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Log filter (audit lines are at info).
        #[arg(long)]
        log_level: String = "warn".to_owned(),
    }
}

/// The demo's configuration and its log filter.
pub struct Demo {
    /// What the demo runs with.
    pub config: DemoConfig,
    /// Log filter.
    pub log_level: String,
}

impl DemoSettings {
    /// Layers flags (`self`, `traffic`) over the file, then resolves.
    pub fn load(self, traffic: TrafficSettings, file: Option<&Path>) -> Result<Demo, ConfigError> {
        let (own_file, traffic_file) = with_traffic::<DemoSettings>(file)?;
        let v = self.or(own_file).with_defaults();
        let traffic = traffic.or(traffic_file).with_defaults();
        if !(1..=64).contains(&v.partitions) {
            return Err(invalid(
                "partitions",
                format!("{} is outside 1..=64", v.partitions),
                "set the input topics' partitions (the default is 4)",
            ));
        }
        let http: Option<SocketAddr> = listen_address(&v.http_listen, 8080)?;
        Ok(Demo {
            config: DemoConfig {
                partitions: v.partitions,
                traffic: traffic.traffic("v-".into())?,
                speedup: speedup(v.speedup)?,
                rate: traffic.rate,
                duration: v.duration.map(Duration::from_secs),
                database_url: v.database_url,
                http,
            },
            log_level: log_filter(&v.log_level)?,
        })
    }
}
