DROP TABLE feed_repair;
