//! A MockMate database on the shared cluster, used by a login role of its own
//! with the privileges the API needs (SELECT on users; SELECT, INSERT on
//! sessions) and nothing else: the API's view, for the tests that break it.

use serde_json::Value;

use super::cmd::{diag, json_run};
use super::pg::PgServer;

/// The API role's password (each site's role is its own: the database's name).
pub const PASSWORD: &str = "api-role-pw";

pub struct ApiSite {
    pub pg: &'static PgServer,
    pub db: String,
    pub role: String,
}

impl ApiSite {
    pub fn new(name: &str) -> ApiSite {
        let pg = PgServer::shared();
        let db = pg.create_mockmate_db(name);
        let role = db.clone();
        pg.create_user(&role, PASSWORD);
        let site = ApiSite { pg, db, role };
        site.grant_api_privileges("public");
        site
    }

    /// The GRANTs the API's role needs on the tables in `schema`.
    pub fn grant_api_privileges(&self, schema: &str) {
        self.sql(&format!(
            "GRANT SELECT ON {schema}.users TO \"{r}\"; GRANT SELECT, INSERT ON {schema}.sessions TO \"{r}\"",
            r = self.role
        ));
    }

    /// Runs `sql` in the site's database as the superuser.
    pub fn sql(&self, sql: &str) -> String {
        self.pg.sql(&self.db, sql)
    }

    /// The seeded active user with 10 credits.
    pub fn ada(&self) -> String {
        self.sql("SELECT id FROM users WHERE email = 'ada@example.com'")
    }

    /// Inserts a user and returns their id.
    pub fn user(&self, active: bool, credits: i32) -> String {
        self.sql(&format!(
            "INSERT INTO users (email, credits, is_active, is_verified) \
             VALUES ('u' || gen_random_uuid() || '@example.com', {credits}, {active}, true) RETURNING id"
        ))
    }

    /// The API role's DATABASE_URL.
    pub fn url(&self) -> String {
        self.pg.url(&self.role, PASSWORD, &self.db)
    }

    /// `mockmate-diag --env production --format json` as the API's role, with `args`.
    pub fn run(&self, args: &[&str]) -> (i32, Value) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = diag(dir.path());
        cmd.env("DATABASE_URL", self.url()).args(["--env", "production", "--format", "json"]).args(args);
        json_run(&mut cmd)
    }
}
