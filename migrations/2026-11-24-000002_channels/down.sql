DROP TABLE channel_bans;
DROP TABLE memberships;
DROP TABLE channels;
