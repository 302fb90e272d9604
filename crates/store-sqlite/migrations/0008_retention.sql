-- Retention (issue #14): pruning deletes a message's tags by message id.
CREATE INDEX message_tags_message ON message_tags (message_id);
