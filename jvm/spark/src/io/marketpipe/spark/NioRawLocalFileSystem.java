package io.marketpipe.spark;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsAction;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's raw local file system with permissions set through java.nio instead of a forked
 * {@code chmod}: without Hadoop's native library (no Maven jar carries it) RawLocalFileSystem runs
 * {@code chmod} as a child process for every file it creates, so each offset-log and commit-log
 * write of a streaming checkpoint forks the driver JVM. The permission bits are the same.
 */
public class NioRawLocalFileSystem extends RawLocalFileSystem {

    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
        Files.setPosixFilePermissions(pathToFile(p).toPath(), posix(permission));
    }

    static Set<PosixFilePermission> posix(FsPermission permission) {
        Set<PosixFilePermission> out = EnumSet.noneOf(PosixFilePermission.class);
        add(out, permission.getUserAction(),
            PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE);
        add(out, permission.getGroupAction(),
            PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE);
        add(out, permission.getOtherAction(),
            PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE);
        return out;
    }

    private static void add(Set<PosixFilePermission> out, FsAction action,
                            PosixFilePermission r, PosixFilePermission w, PosixFilePermission x) {
        if (action.implies(FsAction.READ)) {
            out.add(r);
        }
        if (action.implies(FsAction.WRITE)) {
            out.add(w);
        }
        if (action.implies(FsAction.EXECUTE)) {
            out.add(x);
        }
    }
}
