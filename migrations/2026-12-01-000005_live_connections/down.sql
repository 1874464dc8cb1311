DROP TABLE login_failures;
DROP TABLE token_floors;
