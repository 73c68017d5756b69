//! The stable catalogue of error codes a client sees, each with its gRPC
//! status. Codes never change meaning; docs/PROTOCOL.md lists them.

use tonic::{Code, Status};

macro_rules! catalogue {
    ($($variant:ident => ($code:literal, $grpc:ident),)*) => {
        /// A business error the switch reports to a client.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// The stable name, e.g. `insufficient_float`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }
            pub fn grpc(self) -> Code {
                match self { $(ErrorCode::$variant => Code::$grpc,)* }
            }
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];
        }
    };
}

catalogue! {
    InvalidArgument => ("invalid_argument", InvalidArgument),
    UnknownBank => ("unknown_bank", NotFound),
    AccountNotFound => ("account_not_found", NotFound),
    AmountBelowMinimum => ("amount_below_minimum", InvalidArgument),
    AmountAboveMaximum => ("amount_above_maximum", InvalidArgument),
    TerminalDailyLimit => ("terminal_daily_limit", FailedPrecondition),
    CustomerDailyLimit => ("customer_daily_limit", FailedPrecondition),
    CustomerMonthlyLimit => ("customer_monthly_limit", FailedPrecondition),
    PostOfficeDailyLimit => ("post_office_daily_limit", FailedPrecondition),
    PostOfficeMonthlyLimit => ("post_office_monthly_limit", FailedPrecondition),
    OfflineTooOld => ("offline_too_old", FailedPrecondition),
    NotDeferrable => ("not_deferrable", FailedPrecondition),
    UnknownFeeItem => ("unknown_fee_item", NotFound),
    InsufficientFloat => ("insufficient_float", FailedPrecondition),
    InsufficientCash => ("insufficient_cash", FailedPrecondition),
    InsufficientFunds => ("insufficient_funds", FailedPrecondition),
    InvalidCode => ("invalid_code", FailedPrecondition),
    CodeExpired => ("code_expired", FailedPrecondition),
    TooManyCodeAttempts => ("too_many_code_attempts", ResourceExhausted),
    NotPending => ("not_pending", FailedPrecondition),
    NoOpenShift => ("no_open_shift", FailedPrecondition),
    AlreadyExists => ("already_exists", AlreadyExists),
    ShiftAlreadyOpen => ("shift_already_open", FailedPrecondition),
    CashOutsPending => ("cash_outs_pending", FailedPrecondition),
    Cancelled => ("cancelled", Aborted),
    ConfirmationTimeout => ("confirmation_timeout", Aborted),
    RequestIdReused => ("request_id_reused", AlreadyExists),
    BankRejected => ("bank_rejected", FailedPrecondition),
    BankUnavailable => ("bank_unavailable", Unavailable),
    BankOutcomeUnknown => ("bank_outcome_unknown", Aborted),
    TransactionNotFound => ("transaction_not_found", NotFound),
    PermissionDenied => ("permission_denied", PermissionDenied),
    Unauthenticated => ("unauthenticated", Unauthenticated),
    Internal => ("internal", Internal),
    StoreUnavailable => ("store_unavailable", Unavailable),
    QrInvalid => ("qr_invalid", InvalidArgument),
    QrUnknown => ("qr_unknown", NotFound),
    QrExpired => ("qr_expired", FailedPrecondition),
    QrAlreadyPaid => ("qr_already_paid", FailedPrecondition),
    QrBeingPaid => ("qr_being_paid", Aborted),
    AmountMismatch => ("amount_mismatch", InvalidArgument),
    UnknownMerchant => ("unknown_merchant", NotFound),
    UnknownBiller => ("unknown_biller", NotFound),
    BillCustomerNotFound => ("bill_customer_not_found", NotFound),
    BillNotDue => ("bill_not_due", FailedPrecondition),
    BillAlreadyPaid => ("bill_already_paid", FailedPrecondition),
    PartialPaymentNotAllowed => ("partial_payment_not_allowed", FailedPrecondition),
    BillerRejected => ("biller_rejected", FailedPrecondition),
    BillerUnavailable => ("biller_unavailable", Unavailable),
    UnknownProvider => ("unknown_provider", NotFound),
    InvalidPhone => ("invalid_phone", InvalidArgument),
    InvalidDenomination => ("invalid_denomination", InvalidArgument),
    InvalidCard => ("invalid_card", InvalidArgument),
    InvalidPinBlock => ("invalid_pin_block", InvalidArgument),
    IncorrectPin => ("incorrect_pin", FailedPrecondition),
    PinTriesExceeded => ("pin_tries_exceeded", FailedPrecondition),
    CardNotAccepted => ("card_not_accepted", FailedPrecondition),
    WindowNotFound => ("window_not_found", NotFound),
    WindowOpen => ("window_open", FailedPrecondition),
    StatementInvalid => ("statement_invalid", InvalidArgument),
    RateLimited => ("rate_limited", ResourceExhausted),
    UnknownKey => ("unknown_key", NotFound),
    KeyRevoked => ("key_revoked", FailedPrecondition),
    UnknownConsoleUser => ("unknown_console_user", NotFound),
}

/// An error with its code and a message fit for a teller's screen (never a
/// secret, a code or a full account number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchError {
    pub code: ErrorCode,
    pub message: String,
}

impl SwitchError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> SwitchError {
        SwitchError {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> SwitchError {
        SwitchError::new(ErrorCode::InvalidArgument, message)
    }
}

impl std::fmt::Display for SwitchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for SwitchError {}

/// The gRPC status carries the stable code in the `x-error-code` metadata
/// and in the message, as `code: message`.
impl From<SwitchError> for Status {
    fn from(e: SwitchError) -> Status {
        let mut s = Status::new(e.code.grpc(), format!("{}: {}", e.code.as_str(), e.message));
        if let Ok(v) = e.code.as_str().parse() {
            s.metadata_mut().insert("x-error-code", v);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()));
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
        }
        let s = Status::from(SwitchError::new(
            ErrorCode::InsufficientFloat,
            "e-float too low",
        ));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "insufficient_float: e-float too low");
        assert_eq!(
            s.metadata().get("x-error-code").unwrap(),
            "insufficient_float"
        );
    }
}
