//! `fairmq-shmmonitor --cleanup` never removes another user's session, even as root, unless
//! `--force` (issue 11, item 5). The other user's (dead) session is made by creating a session
//! and handing its objects to uid 65534.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{run_monitor, Session};
use fairmq_shmem::ManagementSegment;

#[test]
fn cleanup_refuses_another_users_session_without_force() {
    let s = Session::new("foreign");
    {
        let (m, created) = ManagementSegment::open_or_create(&s.id, &s.name).unwrap();
        assert!(created);
        drop(m);
    }
    let names = s.objects();
    assert!(!names.is_empty());
    for n in &names {
        let p = Path::new("/dev/shm").join(n);
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600, "{n}");
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
    }
    let id = s.id.as_str().to_owned();
    let (code, out, err) = run_monitor(&["--cleanup", "--shmid", &id]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(
        all.contains(&format!(
            "the session with shmid '{id}' belongs to user 65534"
        )),
        "{all}"
    );
    assert!(all.contains("--force"), "says how to force it: {all}");
    assert_eq!(s.objects(), names, "nothing removed");
    let (code, out, err) = run_monitor(&["--cleanup", "--force", "--shmid", &id]);
    assert_eq!(code, 0, "{out}{err}");
    s.assert_clean();
}
