//! The `docker:plugin/log-driver` WIT interface ↔ [`plugd_core::protocol::logdriver`]: the HTTP
//! calls (Capabilities, StartLogging, StopLogging), the batches `logstreams` reads from the FIFO,
//! and the pages a `ReadLogs` stream is made of. The FIFO itself is never the guest's: see
//! `logstreams`.

use crate::bindings::log_driver::{
    Guest, Info as GuestInfo, LogEntry as GuestEntry, PartialMetadata, ReadConfig as GuestConfig,
};
use crate::drivers::{Answer, driver_error};
use plugd_core::Reply;
use plugd_core::protocol::logdriver::{
    Entry, Info, PAGE_SIZE, Page, Partial, ReadConfig, Request, Response, encode,
};
use wasmtime::Store;

/// Calls the guest for an HTTP request of the log driver subsystem. `ReadLogs` is served as a
/// stream of pages ([`read_page`]), never here.
pub(crate) async fn invoke<T: Send>(
    req: &Request,
    guest: &Guest,
    store: &mut Store<T>,
) -> wasmtime::Result<Reply> {
    let answer = match req {
        Request::Activate => Ok(Response::Activate),
        Request::Capabilities => {
            guest
                .call_capabilities(&mut *store)
                .await?
                .map(|c| Response::Capabilities {
                    read_logs: c.read_logs,
                })
        }
        Request::StartLogging { file, info } => guest
            .call_start_logging(&mut *store, file, &guest_info(info))
            .await?
            .map(|()| Response::Done),
        Request::StopLogging { file } => guest
            .call_stop_logging(&mut *store, file)
            .await?
            .map(|()| Response::Done),
        Request::ReadLogs { .. } => {
            return Ok(Reply::err(
                plugd_core::protocol::status::PLUGIN_ERROR,
                "ReadLogs is answered as a stream",
            ));
        }
    };
    Ok(encode(answer.map_err(driver_error)))
}

/// Hands the guest one batch of `file`'s entries; a 200 when it took them.
pub(crate) async fn log<T: Send>(
    file: &str,
    entries: &[Entry],
    guest: &Guest,
    store: &mut Store<T>,
) -> wasmtime::Result<Reply> {
    let entries: Vec<GuestEntry> = entries.iter().map(guest_entry).collect();
    let answer = guest
        .call_log(&mut *store, file, &entries)
        .await?
        .map(|()| Response::Done);
    Ok(encode(answer.map_err(driver_error)))
}

/// One page of `read-logs`, or the guest's error as a reply.
pub(crate) async fn read_page<T: Send>(
    info: &Info,
    config: &ReadConfig,
    cursor: u64,
    guest: &Guest,
    store: &mut Store<T>,
) -> wasmtime::Result<Answer> {
    let config = GuestConfig {
        since: config.since,
        until: config.until,
        tail: config.tail,
        follow: config.follow,
    };
    let page = guest
        .call_read_logs(&mut *store, &guest_info(info), config, cursor, PAGE_SIZE)
        .await?;
    Ok(match page {
        Ok(p) => Answer::Page(Page {
            entries: p.entries.into_iter().map(entry).collect(),
            cursor: p.cursor,
            end: p.end,
        }),
        Err(e) => Answer::Reply(encode(Err(driver_error(e)))),
    })
}

fn guest_info(i: &Info) -> GuestInfo {
    GuestInfo {
        config: i.config.clone(),
        container_id: i.container_id.clone(),
        container_name: i.container_name.clone(),
        container_entrypoint: i.container_entrypoint.clone(),
        container_args: i.container_args.clone(),
        container_image_id: i.container_image_id.clone(),
        container_image_name: i.container_image_name.clone(),
        container_created: i.container_created,
        container_env: i.container_env.clone(),
        container_labels: i.container_labels.clone(),
        daemon_name: i.daemon_name.clone(),
    }
}

fn guest_entry(e: &Entry) -> GuestEntry {
    GuestEntry {
        source: e.source.clone(),
        time_nano: e.time_nano,
        line: e.line.clone(),
        partial: e.partial.as_ref().map(|p| PartialMetadata {
            last: p.last,
            id: p.id.clone(),
            ordinal: p.ordinal,
        }),
    }
}

fn entry(e: GuestEntry) -> Entry {
    Entry {
        source: e.source,
        time_nano: e.time_nano,
        line: e.line,
        partial: e.partial.map(|p| Partial {
            last: p.last,
            id: p.id,
            ordinal: p.ordinal,
        }),
    }
}
