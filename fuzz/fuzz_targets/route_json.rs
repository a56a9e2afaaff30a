//! Arbitrary route JSON (with the bare-key pre-pass) into publish queues: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rocketmq_tpc::protocol::route_data;
use rocketmq_tpc::route::publish_queues;

fuzz_target!(|data: &[u8]| {
    if let Ok(route) = route_data::parse(data) {
        let _ = publish_queues::from_route(route.clone());
        let _ = publish_queues::from_default_topic(route, 4);
    }
});
