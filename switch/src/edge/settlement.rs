//! Settlement windows, reconciliation and liquidity.

use std::sync::Arc;

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::error::{ErrorCode, SwitchError};
use crate::flows::Switch;
use crate::settlement::reconcile::Counterparty;

use super::convert::*;

fn window_to_proto(w: &crate::settlement::WindowRecord) -> pb::Window {
    pb::Window {
        window_id: w.id,
        state: w.state.label().to_string(),
        opened_at_ms: w.opened_at_ms,
        closed_at_ms: w.closed_at_ms.unwrap_or(0),
        cutoff_timestamp: w.cutoff_timestamp.unwrap_or(0),
        report_sha256: w.report_sha256.clone().unwrap_or_default(),
        settlement_reference: w.settlement_reference.clone().unwrap_or_default(),
        settled_at_ms: w.settled_at_ms.unwrap_or(0),
        transactions: w.report.as_ref().map_or(0, |r| r.transactions),
    }
}

fn liquidity_to_proto(l: &crate::settlement::Liquidity, threshold: u64) -> pb::Liquidity {
    pb::Liquidity {
        post_office_id: l.post_office_id.clone(),
        efloat: l.efloat,
        low_float_threshold: threshold,
        low_float: l.low_float,
        drawers: l
            .drawers
            .iter()
            .map(|(t, cash)| pb::DrawerCash {
                terminal_id: t.clone(),
                cash: *cash,
            })
            .collect(),
    }
}

fn exception_to_proto(e: &crate::settlement::reconcile::Exception) -> pb::ReconciliationException {
    let r = e.resolution.as_ref();
    pb::ReconciliationException {
        exception_id: e.id.clone(),
        class: e.class.clone(),
        transaction_id: e.transaction_id.clone(),
        line: e.line,
        reason: e.reason.clone(),
        switch_amount: e.switch_amount,
        bank_amount: e.bank_amount,
        resolution_note: r.map(|r| r.note.clone()).unwrap_or_default(),
        resolved_by: r.map(|r| r.by.clone()).unwrap_or_default(),
        resolved_at_ms: r.map_or(0, |r| r.at_ms),
    }
}

/// The largest statement chunk accepted.
const STATEMENT_CHUNK_BYTES_MAX: usize = 1 << 20;

pub struct SettlementService {
    pub switch: Arc<Switch>,
}

#[tonic::async_trait]
impl pb::settlement_server::Settlement for SettlementService {
    async fn list_windows(
        &self,
        req: Request<pb::ListWindowsRequest>,
    ) -> Result<Response<pb::ListWindowsResponse>, Status> {
        crate::telemetry::observe("list_windows", async move {
            let p = principal(&req)?;
            let windows = self.switch.list_windows(&p)?;
            Ok(Response::new(pb::ListWindowsResponse {
                windows: windows.iter().map(window_to_proto).collect(),
            }))
        })
        .await
    }

    async fn close_window(
        &self,
        req: Request<pb::CloseWindowRequest>,
    ) -> Result<Response<pb::Window>, Status> {
        crate::telemetry::observe("close_window", async move {
            let p = principal(&req)?;
            let w = self
                .switch
                .close_window(&p, req.get_ref().window_id)
                .await?;
            Ok(Response::new(window_to_proto(&w)))
        })
        .await
    }

    async fn get_report(
        &self,
        req: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::SettlementReport>, Status> {
        crate::telemetry::observe("get_report", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let (w, positions) = self.switch.window_report(&p, r.window_id, &r.participant)?;
            let report = w.report.as_ref().expect("a reported window");
            Ok(Response::new(pb::SettlementReport {
                window_id: w.id,
                state: w.state.label().to_string(),
                from_timestamp: report.from_timestamp,
                cutoff_timestamp: report.cutoff_timestamp,
                csv: crate::settlement::Report::csv(&positions),
                participants: positions
                    .iter()
                    .map(|x| pb::ParticipantPosition {
                        participant: x.participant.clone(),
                        kind: x.kind.clone(),
                        count: x.count,
                        gross_debits: x.gross_debits,
                        gross_credits: x.gross_credits,
                        fees: x.fees,
                        net: x.net,
                    })
                    .collect(),
                sha256: w.report_sha256.clone().unwrap_or_default(),
                collectors: report
                    .collectors
                    .iter()
                    .filter(|c| positions.iter().any(|x| x.participant == c.bank_bin))
                    .map(|c| pb::CollectorPosition {
                        collector_id: c.collector_id.clone(),
                        bank_bin: c.bank_bin.clone(),
                        count: c.count,
                        gross: c.gross,
                        fees: c.fees,
                        net: c.net,
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn settle(
        &self,
        req: Request<pb::SettleRequest>,
    ) -> Result<Response<pb::Window>, Status> {
        crate::telemetry::observe("settle", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let w = self
                .switch
                .settle_window(&p, r.window_id, &r.reference)
                .await?;
            Ok(Response::new(window_to_proto(&w)))
        })
        .await
    }

    async fn reconcile(
        &self,
        req: Request<tonic::Streaming<pb::StatementChunk>>,
    ) -> Result<Response<pb::ReconciliationReport>, Status> {
        crate::telemetry::observe("reconcile", async move {
            let p = principal(&req)?;
            let declared = req
                .extensions()
                .get::<crate::edge::auth::DeclaredDigest>()
                .map(|d| d.0.clone())
                .ok_or_else(|| Status::unauthenticated("unauthenticated: no content digest"))?;
            let mut stream = req.into_inner();
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let item = match stream.message().await {
                        Ok(Some(c)) if c.data.len() > STATEMENT_CHUNK_BYTES_MAX => {
                            Err(SwitchError::new(
                                ErrorCode::StatementInvalid,
                                "a statement chunk is over 1 MiB",
                            ))
                        }
                        Ok(Some(c)) if first && c.window_id == 0 => {
                            Err(SwitchError::invalid("the first chunk must name the window"))
                        }
                        Ok(Some(c)) => Ok(crate::settlement::reconcile::Chunk {
                            window_id: c.window_id,
                            biller: c.biller,
                            data: c.data,
                        }),
                        Ok(None) => break,
                        Err(s) => Err(SwitchError::invalid(format!(
                            "the statement stream broke: {}",
                            s.message()
                        ))),
                    };
                    first = false;
                    let stop = item.is_err();
                    if tx.send(item).await.is_err() || stop {
                        break;
                    }
                }
            });
            let r = self.switch.reconcile(&p, &declared, rx).await?;
            Ok(Response::new(pb::ReconciliationReport {
                window_id: r.window_id,
                bank_bin: r.bank_bin.clone(),
                statement_sha256: r.statement_sha256.clone(),
                lines: r.lines,
                classes: r
                    .classes
                    .iter()
                    .map(|(c, (count, amount))| pb::ClassTotal {
                        class: c.clone(),
                        count: *count,
                        amount: *amount,
                    })
                    .collect(),
                exceptions: r.exceptions.iter().map(exception_to_proto).collect(),
                exceptions_total: r.exceptions_total,
                biller: r.biller.clone(),
                position_checked: r.position.is_some(),
                report_net: r.position.map_or(0, |x| x.report_net),
                statement_net: r.position.map_or(0, |x| x.statement_net),
            }))
        })
        .await
    }

    async fn resolve_exception(
        &self,
        req: Request<pb::ResolveExceptionRequest>,
    ) -> Result<Response<pb::ReconciliationException>, Status> {
        crate::telemetry::observe("resolve_exception", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let who = match (r.bank_bin.as_str(), r.biller.as_str()) {
                (bin, "") => Counterparty::Bank(bin.to_string()),
                ("", code) => Counterparty::Biller(code.to_string()),
                _ => {
                    return Err(
                        SwitchError::invalid("name a bank_bin or a biller, not both").into(),
                    );
                }
            };
            let e = self
                .switch
                .resolve_exception(&p, r.window_id, &who, &r.exception_id, &r.note)
                .await?;
            Ok(Response::new(exception_to_proto(&e)))
        })
        .await
    }

    async fn top_up_float(
        &self,
        req: Request<pb::TopUpFloatRequest>,
    ) -> Result<Response<pb::Liquidity>, Status> {
        crate::telemetry::observe("top_up_float", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let l = self
                .switch
                .top_up_float(&p, &r.client_request_id, &r.post_office_id, r.amount)
                .await?;
            Ok(Response::new(liquidity_to_proto(
                &l,
                self.switch.config.low_float_threshold,
            )))
        })
        .await
    }

    async fn sweep_cash(
        &self,
        req: Request<pb::SweepCashRequest>,
    ) -> Result<Response<pb::Liquidity>, Status> {
        crate::telemetry::observe("sweep_cash", async move {
            let p = principal(&req)?;
            let r = req.get_ref();
            let l = self
                .switch
                .sweep_cash(&p, &r.client_request_id, &r.terminal_id, r.amount)
                .await?;
            Ok(Response::new(liquidity_to_proto(
                &l,
                self.switch.config.low_float_threshold,
            )))
        })
        .await
    }

    async fn get_liquidity(
        &self,
        req: Request<pb::GetLiquidityRequest>,
    ) -> Result<Response<pb::LiquidityResponse>, Status> {
        crate::telemetry::observe("get_liquidity", async move {
            let p = principal(&req)?;
            let all = self
                .switch
                .liquidity(&p, &req.get_ref().post_office_id)
                .await?;
            let threshold = self.switch.config.low_float_threshold;
            Ok(Response::new(pb::LiquidityResponse {
                post_offices: all
                    .iter()
                    .map(|l| liquidity_to_proto(l, threshold))
                    .collect(),
            }))
        })
        .await
    }

    async fn get_pilot_report(
        &self,
        req: Request<pb::GetPilotReportRequest>,
    ) -> Result<Response<pb::PilotReport>, Status> {
        crate::telemetry::observe("get_pilot_report", async move {
            let p = principal(&req)?;
            let r = req.into_inner();
            let report = self.switch.pilot_report(&p, &r.period, &r.commune).await?;
            Ok(Response::new(pilot_report_to_proto(&report)))
        })
        .await
    }

    async fn check_pilot_report(
        &self,
        req: Request<pb::CheckPilotReportRequest>,
    ) -> Result<Response<pb::CheckPilotReportResponse>, Status> {
        crate::telemetry::observe("check_pilot_report", async move {
            let p = principal(&req)?;
            let repair = req.get_ref().repair;
            let differing = self.switch.check_pilot_report(&p, repair).await?;
            Ok(Response::new(pb::CheckPilotReportResponse {
                repaired: repair && !differing.is_empty(),
                differing,
            }))
        })
        .await
    }
}

fn pilot_report_to_proto(r: &crate::settlement::pilot::PilotReport) -> pb::PilotReport {
    let (first, last) = r.period.days();
    pb::PilotReport {
        period: r.period.label(),
        previous_period: r.previous.label(),
        first_day: crate::civil::date(crate::civil::day_start_ms(first)),
        last_day: crate::civil::date(crate::civil::day_start_ms(last)),
        made_at_ms: r.made_at_ms,
        bank_bin: r.bank.clone(),
        commune: r.commune.clone(),
        units: r
            .units
            .iter()
            .map(|u| pb::PilotUnit {
                level: u.level.map_or("", |l| l.label()).to_string(),
                id: u.id.clone(),
                name: u.name.clone(),
                commune: u.commune.clone(),
                district: u.district.clone(),
                pilot: u.pilot,
                products: u
                    .products
                    .iter()
                    .map(|(name, p)| pb::PilotProduct {
                        product: name.clone(),
                        count: p.now.count,
                        value: p.now.value,
                        failed: p.now.failed,
                        reversed: p.now.reversed,
                        previous_count: p.before.count,
                        previous_value: p.before.value,
                    })
                    .collect(),
                active_terminals: u.active_terminals,
                active_merchants: u.active_merchants,
                new_merchants: u.new_merchants,
                distinct_customers: u.distinct_customers,
                bills: u.bills,
                bills_cashless: u.bills_cashless,
                card_count: u.card.count,
                card_value: u.card.value,
            })
            .collect(),
    }
}
