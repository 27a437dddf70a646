package dev.cloudsync.example;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.sqlite.SQLiteConfig;

/**
 * Two SQLite databases, opened with xerial sqlite-jdbc, load the CloudSync extension and
 * sync one row each through a CloudSync server.
 *
 * <pre>java -cp target/classes:sqlite-jdbc.jar dev.cloudsync.example.Sync \
 *     &lt;extension_path&gt; &lt;sync_url&gt; &lt;api_key&gt; &lt;work_dir&gt;</pre>
 *
 * <p>The server's database must have the table {@code notes (id TEXT PRIMARY KEY NOT NULL,
 * title TEXT)}. Each database inserts one row, then both call
 * {@code cloudsync_network_sync} in turn until each has both rows (at most 20 rounds).
 * Prints {@code OK jvm <rows>}, rows being the number of rows in the first database at
 * the end (earlier runs against the same server database add theirs), and exits 0; on
 * any failure prints the reason and exits 1.
 */
public final class Sync {
    private static final int ROUNDS = 20;
    private static final int WAIT_MS = 2000;

    /** Thrown for a failed check; main prints its message and both databases' state. */
    static final class Failure extends Exception {
        Failure(String message) {
            super(message);
        }
    }

    /** One database file and its connection. */
    static final class Replica {
        final String name;
        final Path file;
        final Connection conn;
        String lastSync;

        Replica(String name, Path file, Connection conn) {
            this.name = name;
            this.file = file;
            this.conn = conn;
        }

        /** Runs a statement with parameters and returns the first column of the first row. */
        Object value(String sql, Object... params) throws SQLException {
            try (PreparedStatement st = conn.prepareStatement(sql)) {
                for (int i = 0; i < params.length; i++) {
                    st.setObject(i + 1, params[i]);
                }
                try (ResultSet rs = st.executeQuery()) {
                    return rs.next() ? rs.getObject(1) : null;
                }
            }
        }

        void exec(String sql, Object... params) throws SQLException {
            try (PreparedStatement st = conn.prepareStatement(sql)) {
                for (int i = 0; i < params.length; i++) {
                    st.setObject(i + 1, params[i]);
                }
                st.execute();
            }
        }

        Map<String, String> titles() throws SQLException {
            Map<String, String> out = new LinkedHashMap<>();
            try (PreparedStatement st = conn.prepareStatement("SELECT id, title FROM notes ORDER BY id");
                    ResultSet rs = st.executeQuery()) {
                while (rs.next()) {
                    out.put(rs.getString(1), rs.getString(2));
                }
            }
            return out;
        }
    }

    private Sync() {}

    /** Opens {@code file} afresh with extension loading enabled and loads the extension. */
    static Replica open(String name, Path file, String extension) throws SQLException, java.io.IOException {
        for (String suffix : new String[] {"", "-wal", "-shm", "-journal"}) {
            Files.deleteIfExists(Path.of(file + suffix));
        }
        SQLiteConfig config = new SQLiteConfig();
        config.enableLoadExtension(true);
        Connection conn = config.createConnection("jdbc:sqlite:" + file);
        Replica r = new Replica(name, file, conn);
        // SQLite derives the entry point from the file name: libcloudsync.so ->
        // sqlite3_cloudsync_init.
        r.value("SELECT load_extension(?)", extension);
        return r;
    }

    public static void main(String[] args) {
        if (args.length != 4) {
            System.err.println("usage: Sync <extension_path> <sync_url> <api_key> <work_dir>");
            System.exit(2);
        }
        List<Replica> replicas = new ArrayList<>();
        try {
            run(args[0], args[1], args[2], Path.of(args[3]), replicas);
        } catch (Failure | SQLException | java.io.IOException | RuntimeException e) {
            System.err.println("sync_jvm: FAILED: " + e);
            for (Replica r : replicas) {
                String have;
                try {
                    Map<String, String> t = r.titles();
                    have = t.size() + " rows: " + t;
                } catch (SQLException e2) {
                    have = "cannot read notes: " + e2.getMessage();
                }
                System.err.println("  " + r.name + " (" + r.file + "): " + have);
                System.err.println("    last cloudsync_network_sync: " + r.lastSync);
            }
            System.exit(1);
        }
    }

    static void run(String extension, String url, String key, Path work, List<Replica> replicas)
            throws Failure, SQLException, java.io.IOException {
        Files.createDirectories(work);
        replicas.add(open("jvm-a", work.resolve("jvm-a.db"), extension));
        replicas.add(open("jvm-b", work.resolve("jvm-b.db"), extension));
        Replica first = replicas.get(0);
        String sqlite = (String) first.value("SELECT sqlite_version()");
        String version = (String) first.value("SELECT cloudsync_version()");

        byte[] random = new byte[6];
        new SecureRandom().nextBytes(random);
        String token = HexFormat.of().formatHex(random);
        List<String> ids = new ArrayList<>();
        for (Replica r : replicas) {
            r.exec("CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)");
            r.value("SELECT cloudsync_init('notes')");
            r.value("SELECT cloudsync_network_init(?)", url);
            r.value("SELECT cloudsync_network_set_apikey(?)", key);
            String id = (String) r.value("SELECT cloudsync_uuid()");
            r.exec("INSERT INTO notes (id, title) VALUES (?, ?)", id, "jvm sqlite-jdbc " + r.name + " " + token);
            ids.add(id);
        }

        int round = 0;
        boolean done = false;
        while (!done && round < ROUNDS) {
            round++;
            for (Replica r : replicas) {
                r.lastSync = (String) r.value("SELECT cloudsync_network_sync(?)", WAIT_MS);
                // The result is JSON text: let SQLite's JSON functions read it.
                if (!Integer.valueOf(1).equals(r.value("SELECT json_valid(?)", r.lastSync))) {
                    throw new Failure(r.name + ": cloudsync_network_sync returned " + r.lastSync + ", not JSON");
                }
                Object status = r.value("SELECT json_extract(?, '$.send.status')", r.lastSync);
                if ("held".equals(status) || "failed".equals(status)) {
                    throw new Failure(r.name + ": upload " + status + " in round " + round);
                }
            }
            done = true;
            for (Replica r : replicas) {
                done &= r.titles().keySet().containsAll(ids);
            }
        }
        if (!done) {
            throw new Failure("after " + ROUNDS + " rounds, not every database has both rows " + ids);
        }
        for (Replica r : replicas) {
            Object unsent = r.value("SELECT cloudsync_network_has_unsent_changes()");
            if (!Integer.valueOf(0).equals(unsent)) {
                throw new Failure(r.name + ": cloudsync_network_has_unsent_changes() is " + unsent + " at the end, not 0");
            }
        }
        int rows = first.titles().size();
        System.err.println("sync_jvm: sqlite-jdbc (SQLite " + sqlite + "), extension " + version + ", " + round + " round(s)");
        for (Replica r : replicas) {
            r.conn.close();
        }
        System.out.println("OK jvm " + rows);
    }
}
