ALTER INDEX messages_search RESET (fastupdate);
