// Attachments: upload into a channel, read a file's name, type and size (from the download's
// headers: there is no metadata route), and download with the bearer token.

import { api } from "../net/api";
import type { FileInfo } from "./types";

const infos = new Map<string, Promise<FileInfo>>();

export async function uploadFile(channelId: string, file: File): Promise<FileInfo> {
  const form = new FormData();
  form.append("channel_id", channelId); // the server wants channel_id before the file
  form.append("file", file, file.name);
  const answer = await api<{ file: FileInfo }>("POST", "/v1/files", { form });
  infos.set(answer.file.id, Promise.resolve(answer.file));
  return answer.file;
}

export function fileInfo(fileId: string): Promise<FileInfo> {
  let info = infos.get(fileId);
  if (!info) {
    info = api<Response>("HEAD", `/v1/files/${fileId}`, { raw: true }).then((response) => {
      const disposition = response.headers.get("content-disposition") ?? "";
      return {
        id: fileId,
        channel_id: "",
        filename: /filename="([^"]*)"/.exec(disposition)?.[1] ?? "file",
        content_type: response.headers.get("content-type") ?? "application/octet-stream",
        size: Number(response.headers.get("content-length") ?? 0),
      };
    });
    info.catch(() => infos.delete(fileId)); // try again next time
    infos.set(fileId, info);
  }
  return info;
}

export async function downloadFile(fileId: string): Promise<Blob> {
  const response = await api<Response>("GET", `/v1/files/${fileId}`, { raw: true });
  return response.blob();
}
