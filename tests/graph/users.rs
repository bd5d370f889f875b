//! Re-reading users through `$batch` and finding who holds a certificateUserIds value.

use certsync::{
    domain::UserId,
    graph::{GraphError, USER_SELECT},
};
use graph_emulator::{NewUser, RequestKind};

use crate::helpers::{READ_WRITE, TestGraph};

#[tokio::test]
async fn users_are_reread_in_batches_of_20_in_order_and_a_deleted_user_is_none() {
    let graph = TestGraph::start().await;
    let (_, mut ids) = graph.group_of_users("reread", 44);
    let gone = UserId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    ids.insert(7, gone.clone());
    let client = graph.client_with_roles(READ_WRITE);
    graph.directory().clear_requests();

    let users = client.get_users(&ids, USER_SELECT).await.unwrap();

    assert_eq!(users.len(), 45);
    for (asked, (answered, user)) in ids.iter().zip(&users) {
        assert_eq!(asked, answered, "results keep the order of the ids");
        match user {
            Some(user) => assert_eq!(&user.id, asked),
            None => assert_eq!(asked, &gone),
        }
    }
    assert_eq!(users.iter().filter(|(_, user)| user.is_none()).count(), 1);

    let requests = graph.graph_requests();
    let batches: Vec<_> = requests.iter().filter(|r| r.kind == RequestKind::Batch).collect();
    assert_eq!(batches.len(), 3);
    let mut sizes: Vec<_> = batches.iter().map(|r| r.batch_items.unwrap_or_default()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![5, 20, 20]);
    let items: Vec<_> = requests.iter().filter(|r| r.via_batch).collect();
    assert!(items.iter().all(|r| r.method == "GET" && r.path.contains("$select=id,userPrincipalName")));
    let metrics = client.metrics();
    assert_eq!((metrics.batches, metrics.batch_items), (3, 45));
}

#[tokio::test]
async fn the_holder_of_a_value_is_found_even_with_quotes_and_plus_signs_in_it() {
    let graph = TestGraph::start().await;
    let value = "X509:<I>DC=com,DC=contoso,CN=O'Brien CA<S>CN=a+b@contoso.com";
    let holder = graph.add(NewUser::new("holder@x.test").certificate_user_ids([value]));
    graph.add(NewUser::new("other@x.test").certificate_user_ids(["X509:<PN>other@x.test"]));
    let client = graph.client_with_roles(READ_WRITE);

    let holders = client.find_certificate_user_id_holders(value).await.unwrap();
    let nobody = client.find_certificate_user_id_holders("X509:<PN>nobody@x.test").await.unwrap();

    assert_eq!(holders, vec![(holder, "holder@x.test".to_owned())]);
    assert!(nobody.is_empty());
}

#[tokio::test]
async fn reading_users_without_a_user_permission_fails_with_a_hint() {
    let graph = TestGraph::start().await;
    let user = graph.add_user("u@x.test");
    let client = graph.client_with_roles(&["GroupMember.Read.All"]);

    let error = client.get_users(&[user], USER_SELECT).await.unwrap_err();

    assert!(matches!(error, GraphError::Api { status: 403, .. }), "{error:?}");
    assert!(error.to_string().contains("User.Read.All"), "{error}");
}
