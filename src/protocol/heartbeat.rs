//! HEART_BEAT body (Java `HeartbeatData`, fastjson) and UNREGISTER_CLIENT header.

use serde::Serialize;

use super::ext_fields::{CustomHeader, ExtFieldWriter};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeartbeatData<'a> {
    #[serde(rename = "clientID")]
    client_id: &'a str,
    consumer_data_set: [(); 0],
    producer_data_set: [ProducerData<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducerData<'a> {
    group_name: &'a str,
}

/// The heartbeat body of a producer-only client.
pub fn heartbeat_body(client_id: &str, producer_group: &str) -> Vec<u8> {
    serde_json::to_vec(&HeartbeatData {
        client_id,
        consumer_data_set: [],
        producer_data_set: [ProducerData {
            group_name: producer_group,
        }],
    })
    .expect("serialising plain strings cannot fail")
}

/// `UnregisterClientRequestHeader` for a producer.
pub struct UnregisterClientHeader<'a> {
    /// The client id sent in heartbeats.
    pub client_id: &'a str,
    /// The producer group.
    pub producer_group: &'a str,
}

impl CustomHeader for UnregisterClientHeader<'_> {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        out.put_str("clientID", self.client_id);
        out.put_str("producerGroup", self.producer_group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        assert_eq!(
            String::from_utf8(heartbeat_body("127.0.0.1@1#2", "PG")).unwrap(),
            r#"{"clientID":"127.0.0.1@1#2","consumerDataSet":[],"producerDataSet":[{"groupName":"PG"}]}"#
        );
    }
}
