-- Who raised a notice: `broker` (loop budget, storage faults), a peer's `name@host`, or `you`.
ALTER TABLE notices ADD COLUMN author TEXT NOT NULL DEFAULT '';
UPDATE notices SET author = 'broker' WHERE kind = 'loop_budget';
UPDATE notices SET author = COALESCE(
    (SELECT p.name || '@' || p.host FROM peers p WHERE p.id = notices.peer_id), 'you')
WHERE author = '' AND peer_id IS NOT NULL;
UPDATE notices SET author = 'you' WHERE author = '';
