//! The transport conformance suite, run against the shmem transport on inproc, ipc and tcp, on
//! both descriptor paths: `zmq_path` (descriptors over libzmq, FairMQ's way: no pub/sub) and
//! `queue_path` (descriptors through shared-memory queues, libzmq only for the handshake; pub/sub
//! by reference count). Each module pins its path, whatever `FAIRMQ_SHM_METADATA_PATH` says.
//! Every scenario has its own session; afterwards /dev/shm must hold nothing of it.

use fairmq_shmem::ShmId;
use fairmq_transport::{create_transport, FactoryPtr, TransportConfig};

fn make(session: &str, id: &str, path: &str) -> FactoryPtr {
    create_transport(
        "shmem",
        &TransportConfig::new(id)
            .with("session", session)
            .with("shm-segment-size", 64 << 20)
            .with("shm-metadata-path", path),
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

mod zmq_path {
    use fairmq_transport::conformance::Capabilities;
    use fairmq_transport::FactoryPtr;

    fn make(session: &str, id: &str) -> FactoryPtr {
        super::make(session, id, "zmq")
    }

    fairmq_transport::conformance_suite!(
        super::make,
        Capabilities {
            pubsub: false,
            after_test: Some(super::super::nothing_left),
            fixed_rcv_hwm: Some(0)
        }
    );
}

mod queue_path {
    use fairmq_transport::conformance::Capabilities;
    use fairmq_transport::FactoryPtr;

    fn make(session: &str, id: &str) -> FactoryPtr {
        super::make(session, id, "queue")
    }

    fairmq_transport::conformance_suite!(
        super::make,
        Capabilities {
            pubsub: true,
            after_test: Some(super::super::nothing_left),
            fixed_rcv_hwm: Some(0)
        }
    );
}
