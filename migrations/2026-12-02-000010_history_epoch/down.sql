DROP TRIGGER webhooks_history_epoch ON webhooks;
DROP TRIGGER files_history_epoch ON files;
DROP TRIGGER users_history_epoch ON users;
DROP FUNCTION bump_history_epoch();
DROP TABLE history_epoch;
