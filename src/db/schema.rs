//! Diesel's view of the tables in `migrations/` (what `diesel
//! print-schema` writes; see `diesel.toml`).

diesel::table! {
    access_log (id) {
        id -> BigInt,
        at -> Timestamp,
        username -> Text,
        credential -> Text,
        client -> Text,
        endpoint -> Text,
        method -> Text,
        feed -> Nullable<Text>,
        status -> Integer,
        bytes_in -> BigInt,
        bytes_out -> BigInt,
        duration_ms -> Double,
        requests -> BigInt,
        request_id -> Nullable<Text>,
        read_columns -> Nullable<Text>,
        minute_key -> Nullable<Text>,
        duration_max_ms -> Double,
        read_from -> Nullable<BigInt>,
        read_to -> Nullable<BigInt>,
    }
}

diesel::table! {
    auth_user (id) {
        id -> Integer,
        username -> Text,
        password -> Text,
        email -> Text,
        first_name -> Text,
        last_name -> Text,
        is_active -> Bool,
        is_staff -> Bool,
        is_superuser -> Bool,
        date_joined -> Timestamp,
        last_login -> Nullable<Timestamp>,
    }
}

diesel::table! {
    auth_group (id) {
        id -> Integer,
        name -> Text,
        rate_limit -> Nullable<Text>,
        write_quota -> Nullable<Text>,
    }
}

diesel::table! {
    auth_permission (id) {
        id -> Integer,
        app_label -> Text,
        codename -> Text,
        name -> Text,
    }
}

diesel::table! {
    auth_user_groups (id) {
        id -> Integer,
        user_id -> Integer,
        group_id -> Integer,
    }
}

diesel::table! {
    auth_group_permissions (id) {
        id -> Integer,
        group_id -> Integer,
        permission_id -> Integer,
    }
}

diesel::table! {
    auth_user_user_permissions (id) {
        id -> Integer,
        user_id -> Integer,
        permission_id -> Integer,
    }
}

diesel::table! {
    feed_grant (id) {
        id -> Integer,
        group_id -> Nullable<Integer>,
        user_id -> Nullable<Integer>,
        permission_id -> Integer,
        feed -> Text,
        grant_columns -> Nullable<Text>,
        grant_rows -> Nullable<Text>,
    }
}

diesel::table! {
    authtoken_token (id) {
        id -> Integer,
        user_id -> Integer,
        name -> Text,
        prefix -> Text,
        digest -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        revoked -> Bool,
        scopes -> Nullable<Text>,
        allowed_networks -> Nullable<Text>,
        last_used_from -> Nullable<Text>,
    }
}

diesel::table! {
    session (key_digest) {
        key_digest -> Text,
        state -> Text,
        user_id -> Nullable<Integer>,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_key (id) {
        id -> Integer,
        user_id -> Integer,
        client_key -> Text,
        request_digest -> Nullable<Text>,
        status -> Nullable<Integer>,
        content_type -> Nullable<Text>,
        answer -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    feed_repair (feed) {
        feed -> Text,
        size -> BigInt,
        since -> Timestamp,
    }
}

diesel::table! {
    write_usage (user_id, day) {
        user_id -> Integer,
        day -> Text,
        rows_written -> BigInt,
        bytes_written -> BigInt,
    }
}

diesel::table! {
    oidc_identity (id) {
        id -> Integer,
        issuer -> Text,
        kind -> Text,
        subject -> Text,
        user_id -> Integer,
        created_at -> Timestamp,
        last_seen -> Nullable<Timestamp>,
    }
}

diesel::table! {
    user_totp (user_id) {
        user_id -> Integer,
        secret -> Text,
        confirmed_at -> Nullable<Timestamp>,
        last_step -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    user_recovery_code (id) {
        id -> Integer,
        user_id -> Integer,
        digest -> Text,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(auth_user_groups -> auth_user (user_id));
diesel::joinable!(auth_user_groups -> auth_group (group_id));
diesel::joinable!(auth_group_permissions -> auth_group (group_id));
diesel::joinable!(auth_group_permissions -> auth_permission (permission_id));
diesel::joinable!(auth_user_user_permissions -> auth_user (user_id));
diesel::joinable!(auth_user_user_permissions -> auth_permission (permission_id));
diesel::joinable!(feed_grant -> auth_permission (permission_id));
diesel::joinable!(write_usage -> auth_user (user_id));
diesel::joinable!(authtoken_token -> auth_user (user_id));
diesel::joinable!(oidc_identity -> auth_user (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    auth_user,
    auth_group,
    auth_permission,
    auth_user_groups,
    auth_group_permissions,
    auth_user_user_permissions,
    feed_grant,
    authtoken_token,
    session,
    write_usage,
    oidc_identity,
);

diesel::table! {
    admin_log (id) {
        id -> Integer,
        action_time -> Timestamp,
        user_id -> Nullable<Integer>,
        username -> Text,
        object_type -> Text,
        object_id -> Text,
        object_repr -> Text,
        action -> Text,
        changes -> Text,
    }
}

diesel::table! {
    auth_change (id) {
        id -> Integer,
        n -> BigInt,
    }
}

diesel::table! {
    throttle (key) {
        key -> Text,
        count -> Integer,
        window_end -> BigInt,
    }
}
