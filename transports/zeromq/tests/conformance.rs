//! The transport conformance suite, run against the zeromq transport on inproc, ipc and tcp.

use fairmq_transport::conformance::Capabilities;
use fairmq_transport::{create_transport, FactoryPtr, TransportConfig};

// Link the transport so that its registration is present.
use fairmq_zeromq as _;

fn make(_session: &str, id: &str) -> FactoryPtr {
    create_transport("zeromq", &TransportConfig::new(id)).expect("zeromq factory")
}

fairmq_transport::conformance_suite!(
    super::make,
    Capabilities {
        pubsub: true,
        after_test: None,
        fixed_rcv_hwm: None
    }
);
