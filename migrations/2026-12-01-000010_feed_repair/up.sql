-- Feeds whose append the upstream may have left torn (it failed while
-- writing it): the size to set them back to, so that a restart or another
-- replica finishes the repair.
CREATE TABLE feed_repair (
    feed VARCHAR(128) PRIMARY KEY NOT NULL,
    size BIGINT NOT NULL,
    since TIMESTAMP NOT NULL
);
