//! Channels in one process over the zeromq transport: attach with auto-bind and address
//! write-back, host resolution, the automatic cross-transport copy (spec §4.7) and pollers.

use std::any::Any;
use std::sync::Arc;

use fairmq::channel::AttachOutcome;
use fairmq::channel_config::address::ConnectionMethod;
use fairmq::{Channel, Message, MessagePtr, Parts, Poller, SubChannelSpec, Timeout, TransferError};
use fairmq_transport::{
    create_transport, FactoryPtr, OwnedBuffer, TransportConfig, TransportError,
};

fn factory() -> FactoryPtr {
    // The runtime links the zeromq transport; make sure this test binary does too.
    use fairmq_zeromq as _;
    create_transport("zeromq", &TransportConfig::new("test")).expect("zeromq")
}

fn spec(ty: &str, method: &str, address: &str) -> SubChannelSpec {
    SubChannelSpec {
        socket_type: ty.into(),
        method: method.into(),
        address: address.into(),
        ..SubChannelSpec::default()
    }
}

fn channel(f: &FactoryPtr, name: &str, s: SubChannelSpec) -> Arc<Channel> {
    let method = ConnectionMethod::from_method(&s.method).unwrap();
    Arc::new(Channel::new(name, 0, s, method, f.clone()))
}

fn attach(ch: &Channel) -> String {
    match ch.attach().expect("attach") {
        AttachOutcome::Attached(a) => a,
        AttachOutcome::NotYet(why) => panic!("not attached: {why}"),
    }
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn bind_without_port_auto_binds_in_range_and_writes_back() {
    let f = factory();
    let ch = channel(&f, "data", spec("pull", "bind", "tcp://127.0.0.1:1"));
    let address = attach(&ch);
    let port = port_of(&address);
    assert!((22000..=23000).contains(&port), "{address}");
    assert_eq!(ch.address(), address);
    assert!(ch.is_attached());
}

#[test]
fn port_in_use_falls_back_to_the_range_or_fails_without_auto_bind() {
    let f = factory();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = listener.local_addr().unwrap().port();
    let mut s = spec("pull", "bind", &format!("tcp://127.0.0.1:{busy}"));
    s.port_range_min = 31000;
    s.port_range_max = 31200;
    let ch = channel(&f, "data", s.clone());
    let port = port_of(&attach(&ch));
    assert!((31000..=31200).contains(&port), "{port}");

    s.auto_bind = false;
    let ch = channel(&f, "data", s);
    let err = ch.attach().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "failed to attach channel data[0] (bind on tcp://127.0.0.1:{busy})"
        )),
        "{err}"
    );
}

#[test]
fn connect_resolves_host_names() {
    let f = factory();
    let server = channel(&f, "srv", spec("pull", "bind", "tcp://127.0.0.1:1"));
    let port = port_of(&attach(&server));
    let client = channel(
        &f,
        "cli",
        spec("push", "connect", &format!("tcp://localhost:{port}")),
    );
    assert_eq!(attach(&client), format!("tcp://127.0.0.1:{port}"));
    let mut msg = client.new_message_from(b"hi".to_vec()).unwrap();
    client.send(&mut msg).unwrap();
    let mut got = server.new_message();
    server
        .receive_timeout(&mut got, Timeout::from_millis(5000))
        .unwrap();
    assert_eq!(got.data(), b"hi");
}

#[test]
fn invalid_configuration_is_an_error_and_missing_address_is_not_yet() {
    let f = factory();
    let ch = channel(&f, "data", spec("shove", "bind", "ipc:///tmp/x"));
    assert_eq!(
        ch.attach().unwrap_err().to_string(),
        "Invalid channel type: 'shove'"
    );
    let ch = channel(&f, "data", spec("push", "connect", "unspecified"));
    assert!(matches!(ch.attach().unwrap(), AttachOutcome::NotYet(_)));
    assert!(!ch.is_attached());
}

/// A message of a made-up transport.
struct Foreign(Vec<u8>);

impl Message for Foreign {
    fn transport(&self) -> &'static str {
        "foreign"
    }
    fn data(&self) -> &[u8] {
        &self.0
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn set_used_size(&mut self, size: usize) -> bool {
        if size > self.0.len() {
            return false;
        }
        self.0.truncate(size);
        true
    }
    fn rebuild(&mut self) {
        self.0 = Vec::new();
    }
    fn rebuild_with_size(&mut self, size: usize, _: Option<usize>) -> Result<(), TransportError> {
        self.0 = vec![0; size];
        Ok(())
    }
    fn rebuild_from_buffer(&mut self, buffer: OwnedBuffer) -> Result<(), TransportError> {
        self.0 = buffer.as_slice().to_vec();
        Ok(())
    }
    fn copy_from(&mut self, other: &dyn Message) -> Result<(), TransportError> {
        self.0 = other.data().to_vec();
        Ok(())
    }
    fn alignment(&self) -> Option<usize> {
        None
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[test]
fn messages_of_another_transport_are_copied_automatically() {
    let f = factory();
    let name = format!("inproc://xcopy{}", std::process::id());
    let rx = channel(&f, "rx", spec("pull", "bind", &name));
    attach(&rx);
    let tx = channel(&f, "tx", spec("push", "connect", &name));
    attach(&tx);

    let mut msg: MessagePtr = Box::new(Foreign(b"foreign bytes".to_vec()));
    assert_eq!(tx.send(&mut msg).unwrap(), 13);
    assert_eq!(
        msg.size(),
        0,
        "the original is released after a successful send"
    );
    let mut got: MessagePtr = Box::new(Foreign(Vec::new()));
    rx.receive_timeout(&mut got, Timeout::from_millis(5000))
        .unwrap();
    assert_eq!(
        got.transport(),
        "zeromq",
        "a foreign receive message is replaced"
    );
    assert_eq!(got.data(), b"foreign bytes");

    let mut parts = Parts::new();
    parts.add_part(Box::new(Foreign(b"a".to_vec())));
    parts.add_part(tx.new_message_from(b"b".to_vec()).unwrap());
    tx.send_parts(&mut parts).unwrap();
    let mut got = Parts::new();
    rx.receive_parts_timeout(&mut got, Timeout::from_millis(5000))
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].data(), b"a");
    assert_eq!(got[1].data(), b"b");
}

#[test]
fn failed_cross_transport_send_leaves_the_message_with_the_caller() {
    let f = factory();
    let tx = channel(
        &f,
        "tx",
        spec(
            "push",
            "bind",
            &format!("inproc://nopeer{}", std::process::id()),
        ),
    );
    attach(&tx);
    let mut msg: MessagePtr = Box::new(Foreign(b"keep me".to_vec()));
    assert_eq!(
        tx.send_timeout(&mut msg, Timeout::Immediately),
        Err(TransferError::Timeout)
    );
    assert_eq!(msg.transport(), "foreign");
    assert_eq!(msg.data(), b"keep me");
}

#[test]
fn poller_by_channel_name_and_index() {
    let f = factory();
    let pid = std::process::id();
    let a = channel(&f, "a", spec("pull", "bind", &format!("inproc://pa{pid}")));
    let b = channel(&f, "b", spec("pull", "bind", &format!("inproc://pb{pid}")));
    attach(&a);
    attach(&b);
    let tb = channel(
        &f,
        "tb",
        spec("push", "connect", &format!("inproc://pb{pid}")),
    );
    attach(&tb);
    let poller = Poller::new(vec![a.clone(), b.clone()]).unwrap();
    let events = poller.poll(Timeout::Immediately).unwrap();
    assert!(!events.check_input("a", 0) && !events.check_input("b", 0));
    let mut m = tb.new_message_from(b"x".to_vec()).unwrap();
    tb.send(&mut m).unwrap();
    let events = poller.poll(Timeout::from_millis(5000)).unwrap();
    assert!(events.check_input("b", 0));
    assert!(!events.check_input("a", 0));
    assert!(!events.check_input("nope", 0));
}

/// A poller over a zeromq and a shmem sub-channel (FairMQ refuses to build one): it reports
/// input on either, each at its own index, and waits as long as its timeout; on both of the
/// shmem transport's descriptor paths.
#[test]
fn poller_over_two_transports() {
    poller_over_zeromq_and_shmem("zmq");
    poller_over_zeromq_and_shmem("queue");
}

fn poller_over_zeromq_and_shmem(metadata_path: &str) {
    use fairmq_shmem as _;
    let session = fairmq_test_support::Session::new("mixedpoll");
    {
        let z = factory();
        let shm = create_transport(
            "shmem",
            &TransportConfig::new("mixed")
                .with("session", session.name.as_str())
                .with("shm-segment-size", 10_000_000u64)
                .with("shm-metadata-path", metadata_path),
        )
        .expect("shmem");
        let pid = std::process::id();
        let inproc = format!("inproc://mz{pid}{metadata_path}");
        let zrx = channel(&z, "z", spec("pull", "bind", &inproc));
        let ztx = channel(&z, "ztx", spec("push", "connect", &inproc));
        let addr = session.ipc("mixed");
        let srx = channel(&shm, "s", spec("pull", "bind", &addr));
        let stx = channel(&shm, "stx", spec("push", "connect", &addr));
        for c in [&zrx, &ztx, &srx, &stx] {
            attach(c);
        }
        let poller = Poller::new(vec![zrx.clone(), srx.clone()]).unwrap();

        let start = std::time::Instant::now();
        let events = poller.poll(Timeout::from_millis(200)).unwrap();
        assert!(!events.check_input("z", 0) && !events.check_input("s", 0));
        assert!(
            start.elapsed() >= std::time::Duration::from_millis(200),
            "returned after {:?}, before its timeout",
            start.elapsed()
        );

        let mut m = stx.new_message_from(b"shm".to_vec()).unwrap();
        stx.send(&mut m).unwrap();
        let events = poller.poll(Timeout::from_millis(10_000)).unwrap();
        assert!(events.check_input("s", 0) && !events.check_input("z", 0));
        let mut got = srx.new_message();
        srx.receive(&mut got).unwrap();
        assert_eq!(got.data(), b"shm");

        let mut m = ztx.new_message_from(b"zmq".to_vec()).unwrap();
        ztx.send(&mut m).unwrap();
        let events = poller.poll(Timeout::Forever).unwrap();
        assert!(events.check_input("z", 0) && !events.check_input("s", 0));
        let mut got = zrx.new_message();
        zrx.receive(&mut got).unwrap();
        assert_eq!(got.data(), b"zmq");
    }
    session.assert_clean();
}
