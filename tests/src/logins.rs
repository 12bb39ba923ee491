//! What the login and sign-up tests share: connections from chosen loopback addresses (so a test can
//! play clients at different addresses), the requests they send, and the error codes they get.

use crate::harness::hello;
use protocol::*;
use std::net::SocketAddr;

/// The password of every account these tests make.
pub const PASSWORD: &str = "the right password";

pub fn code(result: &Result<Reply, ClientError>) -> Result<(), ErrorCode> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .server_error()
            .map(|e| e.code)
            .unwrap_or_else(|| panic!("transport error: {e}"))),
    }
}

/// A customer connection from a chosen loopback address (all of 127.0.0.0/8 is this machine), so a
/// test can play clients at different addresses.
pub async fn connect_from(server: &str, source: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(server.parse().unwrap()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    Client::handshake(stream, hello(Role::Customer, None))
        .await
        .unwrap()
        .0
}

pub fn sign_up_body(email: &str) -> RequestBody {
    RequestBody::SignUp(SignUp {
        first_name: "Grace".into(),
        last_name: "Hopper".into(),
        email: email.into(),
        password: PASSWORD.into(),
    })
}

pub fn log_in(email: &str, password: &str) -> RequestBody {
    RequestBody::LogIn {
        email: email.into(),
        password: password.into(),
    }
}
