-- Token revocation and case-insensitive usernames (issue 11).

-- Every token carries the generation of its user at issue; bumping it (password change,
-- role change, deactivation, logout, `ehrs user reset-password`) revokes them all.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;

-- Usernames are unique without regard to case. Names that already collide keep the
-- oldest as it is; the later ones get '-' and the end of their id appended, so the
-- index can be built (their owners sign in with the new name, which `GET /users` shows).
UPDATE users SET username = username || '-' || lower(substr(id, length(id) - 5))
WHERE EXISTS (
    SELECT 1 FROM users AS earlier
    WHERE lower(earlier.username) = lower(users.username)
      AND (earlier.created_at < users.created_at
           OR (earlier.created_at = users.created_at AND earlier.id < users.id))
);
CREATE UNIQUE INDEX users_username_ci ON users (lower(username));
