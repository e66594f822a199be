//! Command errors with IPA's `RESTError` serialization (`type`, `code`,
//! `message`, `details`), also used for the HTTP errors of the API.

use ingot_proto::agent::CommandError;

/// An error of a command or of a command submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}: {details}")]
pub struct CmdError {
    /// IPA's error class name, e.g. `InvalidCommandParamsError`.
    pub kind: &'static str,
    /// HTTP-like code.
    pub code: u16,
    /// Short message.
    pub message: String,
    /// Details.
    pub details: String,
}

impl CmdError {
    fn new(kind: &'static str, code: u16, message: &str, details: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.to_string(),
            details: details.into(),
        }
    }

    /// 400: malformed request body.
    pub fn invalid_content(details: impl Into<String>) -> Self {
        Self::new("InvalidContentError", 400, "Invalid request body", details)
    }
    /// 400: unknown command of a known extension.
    pub fn invalid_command(details: impl Into<String>) -> Self {
        Self::new("InvalidCommandError", 400, "Invalid command", details)
    }
    /// 400: the parameters were refused.
    pub fn invalid_params(details: impl Into<String>) -> Self {
        Self::new(
            "InvalidCommandParamsError",
            400,
            "Invalid command parameters",
            details,
        )
    }
    /// 404: unknown extension or command id.
    pub fn not_found(details: impl Into<String>) -> Self {
        Self::new(
            "RequestedObjectNotFoundError",
            404,
            "Requested object not found",
            details,
        )
    }
    /// 409: a command is still running.
    pub fn busy(running: &str) -> Self {
        Self::new(
            "AgentIsBusy",
            409,
            "Agent is busy",
            format!("executing command {running}"),
        )
    }
    /// 409: steps were listed by other hardware manager versions.
    pub fn version_mismatch(details: impl Into<String>) -> Self {
        Self::new(
            "VersionMismatch",
            409,
            "Hardware managers version mismatch",
            details,
        )
    }
    /// 404: no disk matched the root device hints.
    pub fn device_not_found(details: impl Into<String>) -> Self {
        Self::new(
            "DeviceNotFound",
            404,
            "Error finding the disk or partition device to deploy the image onto",
            details,
        )
    }
    /// 500: a checksum did not match.
    pub fn checksum(details: impl Into<String>) -> Self {
        Self::new(
            "ImageChecksumError",
            500,
            "Error verifying image checksum",
            details,
        )
    }
    /// 500: the image could not be downloaded.
    pub fn download(details: impl Into<String>) -> Self {
        Self::new(
            "ImageDownloadError",
            500,
            "Error downloading image",
            details,
        )
    }
    /// 500: the image could not be written.
    pub fn write(details: impl Into<String>) -> Self {
        Self::new(
            "ImageWriteError",
            500,
            "Error writing image to device",
            details,
        )
    }
    /// 500: erasing a device failed.
    pub fn erase(details: impl Into<String>) -> Self {
        Self::new(
            "BlockDeviceEraseError",
            500,
            "Error erasing block device",
            details,
        )
    }
    /// 500: no hardware manager implements the step.
    pub fn no_such_step(details: impl Into<String>) -> Self {
        Self::new(
            "HardwareManagerMethodNotFound",
            500,
            "No HardwareManager found to handle method",
            details,
        )
    }
    /// 500: any other failure inside a command.
    pub fn execution(details: impl Into<String>) -> Self {
        Self::new(
            "CommandExecutionError",
            500,
            "Command execution failed",
            details,
        )
    }

    /// The `command_error` object.
    pub fn to_wire(&self) -> CommandError {
        CommandError {
            kind: self.kind.to_string(),
            code: self.code,
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}
