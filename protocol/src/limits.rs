//! Size limits. A receiver checks these before parsing anything, so a hostile peer
//! cannot make it allocate more than a message's worth of memory.

/// Largest COSE_Sign1 accepted or produced, in bytes. Mosquitto's default
/// `message_size_limit` is far above this; a print job larger than
/// [`MAX_CHUNK_BYTES`] travels in chunks.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Largest document chunk carried in one print-job message.
pub const MAX_CHUNK_BYTES: usize = 192 * 1024;

/// Largest `kid` accepted, in bytes.
pub const MAX_KID_BYTES: usize = 64;

/// Largest identifier (tenant, device, RPC method, …), in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// Largest MQTT topic we build or accept, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
