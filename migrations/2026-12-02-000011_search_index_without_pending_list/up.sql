-- The search index takes each message's words as the message is inserted (issue 15).
--
-- With GIN's default `fastupdate`, inserts append to a pending list, and whichever insert
-- finds that list over 4 MB merges all of it into the index, inside its own statement. For a
-- busy channel that insert is a batch of posts holding the channel's lock: 110–190 ms, about
-- every 26,000 messages, during which nobody can post to the channel (POST p99.9 128–207 ms
-- against 17–37 ms without the list, at about the same throughput: BENCHMARKS.md, round
-- eight). A search also reads the whole unsorted list. Without it, every batch pays its own
-- small share as it goes.
ALTER INDEX messages_search SET (fastupdate = off);
-- Whatever is already pending moves into the index now, not with some unlucky post.
SELECT gin_clean_pending_list('messages_search'::regclass);
