-- The MockMate tables as the API's migrations create them, and one active user:
-- copied from tests/support/pg.rs (MOCKMATE_SCHEMA, MOCKMATE_ACTIVE_USER).
-- bench/run loads this into its own throwaway cluster; keep it in step with the harness.
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    first_name text,
    last_name text,
    credits int NOT NULL DEFAULT 0,
    is_active bool NOT NULL DEFAULT true,
    is_verified bool NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid REFERENCES users(id),
    job_title text,
    difficulty text,
    duration int,
    session_type text,
    status text DEFAULT 'created',
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO users (email, first_name, last_name, credits, is_active, is_verified)
VALUES ('ada@example.com', 'Ada', 'Lovelace', 10, true, true);
