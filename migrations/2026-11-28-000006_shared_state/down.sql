DROP TABLE throttle;
DROP TABLE auth_change;
