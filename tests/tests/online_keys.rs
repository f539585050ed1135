//! The control plane treats a broker config change as online (no restart) only for keys the
//! broker really applies live: every entry of the control plane's `ONLINE_KEYS` must be in
//! the broker's `LIVE_KEYS`, or a spec change would be answered by a refused
//! UPDATE_BROKER_CONFIG instead of a rolling restart.

#[test]
fn every_online_key_of_the_control_plane_is_live_in_the_broker() {
    for k in flotilla_cp::reconcile::render::ONLINE_KEYS {
        assert!(
            flotilla_broker::config::LIVE_KEYS.contains(k),
            "{k} is treated as online by the control plane but the broker does not apply it live"
        );
    }
}
