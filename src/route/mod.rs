//! Routes: which queues a topic has, on which master brokers. Data only, no I/O.

pub mod publish_queues;
pub mod table;

pub use publish_queues::{PublishQueue, TopicRoute};
pub use table::{RouteSnapshot, RouteTable};
