//! A client can discover the API by reflection in either version: v1
//! (grpcurl, current tools) and v1alpha (Python's grpcio-reflection,
//! Postman, older grpcurl), without signing anything.

use tests::Harness;
use tonic_reflection::pb::{v1, v1alpha};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_reflection_versions_list_the_services() {
    let h = Harness::start(|_| {}).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("v1alpha is served")
        .into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    let names: Vec<String> = match answer.message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("not a service list: {other:?}"),
    };
    assert!(
        names.iter().any(|n| n == "paymentswitch.v1.Teller"),
        "{names:?}"
    );

    let mut current = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = current
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("v1 is served")
        .into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    assert!(matches!(
        answer.message_response,
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l))
            if l.service.iter().any(|s| s.name == "paymentswitch.v1.Settlement")
    ));
}
