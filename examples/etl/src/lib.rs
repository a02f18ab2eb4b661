//! Extract, transform, load: parameters with defaults and nested types, a
//! parallel map over the sources, a cached task and a task with a timeout.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_sdk::{flow, log, task, wait_all};

/// Where rows come from.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Name of the source.
    pub name: String,
    /// How many rows it holds.
    pub rows: u32,
}

/// How to transform and load.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Currency to convert totals into.
    #[serde(default = "default_currency")]
    pub currency: Currency,
    /// Milliseconds each source takes to read (the reads run in parallel).
    #[serde(default)]
    pub extract_latency_ms: u64,
    /// Milliseconds the warehouse takes to answer; past 1000 ms the load times out.
    #[serde(default)]
    pub warehouse_latency_ms: u64,
}

/// Currencies the rate service knows.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// Euro.
    Eur,
    /// US dollar.
    Usd,
}

fn default_currency() -> Currency {
    Currency::Eur
}

impl Default for Settings {
    fn default() -> Self {
        Self { currency: default_currency(), extract_latency_ms: 0, warehouse_latency_ms: 0 }
    }
}

/// What the flow returns.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Rows extracted per source.
    pub rows: Vec<u64>,
    /// Total in the chosen currency, in cents.
    pub total_cents: u64,
    /// Where the data went.
    pub loaded_to: String,
}

/// Extracts every source in parallel, converts, and loads the total.
#[flow]
fn etl(
    #[default(vec![Source { name: "orders".into(), rows: 3 }, Source { name: "refunds".into(), rows: 2 }])]
    sources: Vec<Source>,
    #[default(Settings::default())] settings: Settings,
) -> sluice_sdk::Result<Report> {
    log::info!("extracting {} sources", sources.len());
    let reads = extract::map(sources.into_iter().map(|source| (source, settings.extract_latency_ms)));
    let rows = wait_all(reads).into_iter().collect::<sluice_sdk::Result<Vec<u64>>>()?;
    // The second call is answered from the cache, without running the task.
    let rate = exchange_rate(settings.currency)?;
    let again = exchange_rate(settings.currency)?;
    assert_eq!(rate, again);
    let total_cents = rows.iter().sum::<u64>() * rate;
    let loaded_to = load(total_cents, settings.warehouse_latency_ms)?;
    Ok(Report { rows, total_cents, loaded_to })
}

/// Reads one source; each row is worth 100 units.
#[task]
fn extract(source: Source, latency_ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(latency_ms));
    log::info!("extracted {} rows from {}", source.rows, source.name);
    u64::from(source.rows) * 100
}

/// Cents per unit in a currency; slow to ask, so cached.
#[task(cache = true, cache_expiration = "1h")]
fn exchange_rate(currency: Currency) -> u64 {
    log::info!("asking the rate service for {currency:?}");
    match currency {
        Currency::Eur => 92,
        Currency::Usd => 100,
    }
}

/// Writes the total to the warehouse; gives up after one second.
#[task(timeout = "1s")]
fn load(total_cents: u64, latency_ms: u64) -> String {
    std::thread::sleep(std::time::Duration::from_millis(latency_ms));
    log::info!("loaded {total_cents} cents");
    "warehouse".to_string()
}

sluice_sdk::export_flows! { flows: [etl], tasks: [extract, exchange_rate, load] }
