//! The transport conformance suite on the descriptor-queue path (`shm-metadata-path queue`):
//! descriptors through shared-memory queues, libzmq only for the handshake; inproc, ipc and
//! tcp. Every scenario has its own session; afterwards /dev/shm must hold nothing of it.

use fairmq_shmem::ShmId;
use fairmq_transport::conformance::Capabilities;
use fairmq_transport::{create_transport, FactoryPtr, TransportConfig};

fn make(session: &str, id: &str) -> FactoryPtr {
    create_transport(
        "shmem",
        &TransportConfig::new(id)
            .with("session", session)
            .with("shm-segment-size", 64 << 20)
            .with("shm-metadata-path", "queue"),
    )
    .expect("shmem factory")
}

fn nothing_left(session: &str) {
    let id = ShmId::from_session(session);
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(id.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "session {session} left {left:?} in /dev/shm"
    );
}

fairmq_transport::conformance_suite!(
    super::make,
    Capabilities {
        pubsub: true,
        after_test: Some(super::nothing_left),
        fixed_rcv_hwm: Some(0)
    }
);
