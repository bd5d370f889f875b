//! Reading group members: paging at 999, `$select`, advanced-query headers, non-user members counted.

use certsync::{
    domain::GroupId,
    graph::{GraphError, MembershipScope, USER_SELECT},
};
use graph_emulator::NewUser;

use crate::helpers::{READ_WRITE, TestGraph};

#[tokio::test]
async fn a_2500_member_group_is_read_in_three_pages_of_999_with_non_users_counted() {
    // Arrange: 2,500 users, one holding values, plus a device, a service principal and a nested group.
    let graph = TestGraph::start().await;
    let (group, users) = graph.group_of_users("big", 2_500);
    let directory = graph.directory();
    let tenant = graph.tenant.as_str();
    directory.update_user(tenant, users[1_234].as_str(), |user| {
        user.certificate_user_ids = vec!["X509:<PN>user1234@big.test".to_owned()];
        user.employee_id = Some("E-1234".to_owned());
    });
    let others = [
        directory.add_device(tenant, "laptop"),
        directory.add_service_principal(tenant, "robot"),
        directory.add_group(tenant, "nested"),
    ];
    for other in &others {
        directory.add_member(tenant, group.as_str(), other);
    }
    let client = graph.client_with_roles(READ_WRITE);
    directory.clear_requests();

    // Act
    let members = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap();

    // Assert: every user, the odd members counted, nothing unreadable.
    assert_eq!(members.users.len(), 2_500);
    assert_eq!(members.non_user_members, 3);
    let holder = members.users.iter().find(|u| u.id == users[1_234]).expect("the holder is listed");
    assert_eq!(holder.certificate_user_ids, vec!["X509:<PN>user1234@big.test"]);
    assert_eq!(holder.employee_id(), Some("E-1234"));
    assert_eq!(holder.mail(), Some("user1234@big.test"));

    // Assert: three pages of the user cast, with $top=999, $select and $count, then one $count of all members.
    let requests = graph.graph_requests();
    let pages: Vec<_> = requests.iter().filter(|r| r.path.contains("/members/microsoft.graph.user")).collect();
    assert_eq!(pages.len(), 3, "{:#?}", requests.iter().map(|r| &r.path).collect::<Vec<_>>());
    assert!(pages.iter().all(|r| r.status == 200));
    let first = &pages[0].path;
    assert!(first.contains("$top=999"), "{first}");
    assert!(first.contains("$count=true"), "{first}");
    assert!(first.contains("$select=id,userPrincipalName,mail,employeeId"), "{first}");
    assert!(first.contains("authorizationInfo"), "{first}");
    let counts: Vec<_> = requests.iter().filter(|r| r.path.ends_with("/members/$count")).collect();
    assert_eq!(counts.len(), 1);
    assert_eq!(requests.len(), 4, "nothing else was sent");

    let metrics = client.metrics();
    assert_eq!(metrics.reads, 4);
    assert_eq!(metrics.tokens_acquired, 1, "the credential's cached token serves every request");
}

#[tokio::test]
async fn transitive_members_include_users_of_nested_groups() {
    let graph = TestGraph::start().await;
    let directory = graph.directory();
    let tenant = graph.tenant.as_str();
    let outer = directory.add_group(tenant, "outer");
    let inner = directory.add_group(tenant, "inner");
    let direct = graph.add_user("direct@x.test");
    let nested = graph.add_user("nested@x.test");
    let device = directory.add_device(tenant, "kiosk");
    directory.add_members(tenant, &outer, [direct.as_str(), inner.as_str()]);
    directory.add_members(tenant, &inner, [nested.as_str(), device.as_str()]);
    let client = graph.client_with_roles(READ_WRITE);
    let outer = GroupId::parse(&outer).unwrap();

    let direct_only = client.group_members(&outer, MembershipScope::Direct, USER_SELECT).await.unwrap();
    let transitive = client.group_members(&outer, MembershipScope::Transitive, USER_SELECT).await.unwrap();

    assert_eq!(direct_only.users.iter().map(|u| &u.id).collect::<Vec<_>>(), vec![&direct]);
    assert_eq!(direct_only.non_user_members, 1, "the nested group");
    let mut ids: Vec<_> = transitive.users.iter().map(|u| u.id.clone()).collect();
    ids.sort();
    let mut expected = vec![direct, nested];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(transitive.non_user_members, 2, "the nested group and the device");
    assert!(graph.graph_requests().iter().any(|r| r.path.contains("/transitiveMembers/$count")));
}

#[tokio::test]
async fn users_the_app_may_not_read_fail_the_member_read_naming_the_permission() {
    // Without User.Read.All, Graph returns users as `@odata.type` + `id` only [group-list-members]. Skipping them
    // (as before issue 18) made them look like users who left the group, and their values were removed.
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("hidden", 3);
    let client = graph.client_with_roles(&["GroupMember.Read.All"]);

    let error = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    let text = error.to_string();
    assert!(text.contains("3 member(s) of group") && text.contains("User.Read.All"), "{text}");
}

#[tokio::test]
async fn selected_extension_attributes_are_returned_by_name() {
    let graph = TestGraph::start().await;
    let directory = graph.directory();
    let group = directory.add_group(graph.tenant.as_str(), "ext");
    let user = graph.add(NewUser::new("ext@x.test").extension("extension_abc_badge", "B-7").sam("EXT7"));
    directory.add_member(graph.tenant.as_str(), &group, user.as_str());
    let client = graph.client_with_roles(READ_WRITE);
    let select: Vec<&str> = USER_SELECT.iter().copied().chain(["extension_abc_badge"]).collect();

    let members =
        client.group_members(&GroupId::parse(&group).unwrap(), MembershipScope::Direct, &select).await.unwrap();

    let read = &members.users[0];
    assert_eq!(read.extension("extension_abc_badge"), Some("B-7"));
    assert_eq!(read.on_premises_sam_account_name(), Some("EXT7"));
}

#[tokio::test]
async fn reading_members_without_permission_fails_with_a_groupmember_hint() {
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("locked", 1);
    let client = graph.client_with_roles(&["User.Read.All"]);

    let error = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    let GraphError::Api { status, code, request_id, .. } = &error else { panic!("{error:?}") };
    assert_eq!(*status, 403);
    assert_eq!(code, "Authorization_RequestDenied");
    assert!(request_id.is_some());
    assert!(error.to_string().contains("GroupMember.Read.All"), "{error}");
}

#[tokio::test]
async fn a_missing_group_is_a_404_with_a_hint_to_check_the_id() {
    let graph = TestGraph::start().await;
    let client = graph.client_with_roles(READ_WRITE);
    let missing = GroupId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();

    let error = client.group_members(&missing, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    assert_eq!(error.status(), Some(404));
    assert!(error.to_string().contains("check the configured group id"), "{error}");
}
