DELETE FROM auth_permission WHERE app_label = 'lbasedb' AND codename = 'view_access';
DROP TABLE access_log;
