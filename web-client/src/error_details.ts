// The google.rpc.BadRequest error detail, which usersd attaches to every
// invalid_argument error to name the field at fault.
//
// @bufbuild/protobuf ships no googleapis types, and buf.gen.yaml generates
// only proto/. Instead of vendoring google/rpc/error_details.proto, this
// file describes the two messages it needs (a subset of the real file, with
// the same names and field numbers) as a FileDescriptorProto and lets
// @bufbuild/protobuf build the schema from it. ConnectError.findDetails can
// then decode the detail like any generated message; fields this subset
// leaves out (localized_message) are skipped as unknown fields.

import { create, createFileRegistry, type Message } from "@bufbuild/protobuf";
import { messageDesc, type GenMessage } from "@bufbuild/protobuf/codegenv2";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";

/** google.rpc.BadRequest.FieldViolation: one field and what is wrong with it. */
export type FieldViolation = Message<"google.rpc.BadRequest.FieldViolation"> & {
  /** The request field at fault, e.g. "email" or "full_name". */
  field: string;
  /** Why the value is rejected, in English, e.g. "is required". */
  description: string;
  /** A machine-readable reason, when the server sets one. */
  reason: string;
};

/** google.rpc.BadRequest: the fields of a request that break its rules. */
export type BadRequest = Message<"google.rpc.BadRequest"> & {
  fieldViolations: FieldViolation[];
};

const string = (name: string, number: number) => ({
  name,
  number,
  jsonName: name,
  label: Label.OPTIONAL,
  type: Type.STRING,
});

const file = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "google/rpc/error_details.proto",
    package: "google.rpc",
    syntax: "proto3",
    messageType: [
      {
        name: "BadRequest",
        field: [
          {
            name: "field_violations",
            number: 1,
            jsonName: "fieldViolations",
            label: Label.REPEATED,
            type: Type.MESSAGE,
            typeName: ".google.rpc.BadRequest.FieldViolation",
          },
        ],
        nestedType: [
          {
            name: "FieldViolation",
            field: [string("field", 1), string("description", 2), string("reason", 3)],
          },
        ],
      },
    ],
  }),
  () => undefined,
).getFile("google/rpc/error_details.proto");

if (file === undefined) {
  throw new Error("error_details: descriptor did not register");
}

/** The schema of google.rpc.BadRequest, for ConnectError.findDetails. */
export const BadRequestSchema: GenMessage<BadRequest> = messageDesc(file, 0);

/** The schema of google.rpc.BadRequest.FieldViolation. */
export const FieldViolationSchema: GenMessage<FieldViolation> = messageDesc(file, 0, 0);
