//! Bad input gives typed errors that name the address or type, never a panic.

use fairmq_transport::{
    available_transports, create_transport, SocketType, TransportConfig, TransportError,
};

use fairmq_zeromq as _;

fn factory() -> fairmq_transport::FactoryPtr {
    create_transport("zeromq", &TransportConfig::new("bad")).expect("factory")
}

#[test]
fn malformed_addresses_are_refused_with_the_address_named() {
    let f = factory();
    let s = f.new_socket(SocketType::Push, "push").expect("socket");
    for addr in [
        "tcp://127.0.0.1",
        "foo://x",
        "",
        "tcp://",
        "ipc://",
        "inproc://",
        "tcp://host:http",
    ] {
        for result in [s.bind(addr).map(|_| ()), s.connect(addr)] {
            match result {
                Err(TransportError::InvalidAddress { address, reason }) => {
                    assert_eq!(address, addr);
                    assert!(!reason.is_empty());
                }
                other => panic!("{addr:?}: expected InvalidAddress, got {other:?}"),
            }
        }
    }
}

#[test]
fn unknown_socket_type_is_named() {
    let err = "dealer2".parse::<SocketType>().unwrap_err();
    assert_eq!(err, TransportError::UnknownSocketType("dealer2".into()));
    assert!(err.to_string().contains("'dealer2'"));
    assert!(
        err.to_string().contains("push"),
        "lists the known types: {err}"
    );
    for t in SocketType::ALL {
        assert_eq!(t.as_str().parse::<SocketType>(), Ok(t));
    }
}

#[test]
fn binding_a_port_in_use_fails_with_the_address() {
    let f = factory();
    let a = f.new_socket(SocketType::Pull, "a").expect("socket");
    let bound = a.bind("tcp://127.0.0.1:*").expect("bind");
    let b = f.new_socket(SocketType::Pull, "b").expect("socket");
    match b.bind(&bound) {
        Err(TransportError::Bind {
            address, reason, ..
        }) => {
            assert_eq!(address, bound);
            assert!(reason.contains("in use"), "{reason}");
        }
        other => panic!("expected Bind error, got {other:?}"),
    }
}

#[test]
fn unknown_transport_lists_the_registered_ones() {
    assert!(available_transports().contains(&"zeromq"));
    let err = create_transport("carrier-pigeon", &TransportConfig::new("x"))
        .err()
        .expect("unknown transport");
    let text = err.to_string();
    assert!(text.contains("'carrier-pigeon'"), "{text}");
    assert!(text.contains("zeromq"), "{text}");
}

#[test]
fn malformed_transport_options_are_named() {
    let err = create_transport(
        "zeromq",
        &TransportConfig::new("x").with("io-threads", "many"),
    )
    .err()
    .expect("bad io-threads");
    assert!(err.to_string().contains("--io-threads"), "{err}");
}
