DROP TABLE user_recovery_code;
DROP TABLE user_totp;
